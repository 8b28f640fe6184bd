package cache

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/keygate/keygate/keys"
)

// entry is one cached record: what decisions need of an existing key's
// record (unknown keys are remembered apart, see negative). It is kept small — a million of them
// must fit in a few hundred MiB — so it holds no name, creation or use
// times, stores times as unix nanoseconds, shares tenant, plan and scope
// lists between keys (interned), and leaves lineage empty when it is the id.
type entry struct {
	hash                     keys.Hash
	env                      keys.Env
	id, prefix, tenant, plan string
	lineage                  string
	scopes                   []string
	expires, revoked, rolled int64
	// cidrs and meta are nil for a key without them: parsed once, when
	// the record was read, never on a request.
	cidrs []netip.Prefix
	meta  map[string]string
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// active reports whether the key may be used at now (unix nanoseconds):
// as keys.Record.Status, neither revoked nor expired.
func (e *entry) active(now int64) bool {
	return (e.revoked == 0 || now < e.revoked) && (e.expires == 0 || now < e.expires)
}

// record rebuilds the part of a keys.Record that decisions read.
func (e *entry) record() keys.Record {
	r := keys.Record{ID: e.id, Hash: e.hash, Prefix: e.prefix, Tenant: e.tenant, Env: e.env, Scopes: e.scopes,
		Plan: e.plan, Lineage: e.lineage, ExpiresAt: fromNanos(e.expires), RevokedAt: fromNanos(e.revoked), RolledAt: fromNanos(e.rolled),
		AllowedCIDRs: e.cidrs, Metadata: e.meta}
	if r.Lineage == "" {
		r.Lineage = r.ID
	}
	return r
}

// entryOf makes the cached form of r.
func (c *Cache) entryOf(r *keys.Record) *entry {
	e := &entry{hash: r.Hash, env: r.Env, id: r.ID, prefix: r.Prefix,
		tenant: c.intern.str(r.Tenant), plan: c.intern.str(r.Plan), scopes: c.intern.list(r.Scopes),
		expires: nanos(r.ExpiresAt), revoked: nanos(r.RevokedAt), rolled: nanos(r.RolledAt),
		cidrs: r.AllowedCIDRs, meta: r.Metadata}
	if r.Lineage != r.ID {
		e.lineage = r.Lineage
	}
	return e
}

// interner shares equal strings and scope lists between cached records.
// It is bounded: past maxInterned distinct values, values are kept as
// they come.
type interner struct {
	mu    sync.Mutex
	strs  map[string]string
	lists map[string][]string
}

const maxInterned = 100_000

func (in *interner) str(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.strs[s]; ok {
		return v
	}
	if len(in.strs) < maxInterned {
		in.strs[s] = s
	}
	return s
}

func (in *interner) list(l []string) []string {
	if len(l) == 0 {
		return []string{}
	}
	k := strings.Join(l, "\x00")
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.lists[k]; ok {
		return v
	}
	v := append([]string(nil), l...)
	if len(in.lists) < maxInterned {
		in.lists[k] = v
	}
	return v
}
