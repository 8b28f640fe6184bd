package store

import (
	"fmt"
	"time"

	"github.com/keygate/keygate/keys"
)

// NotifyChannel is the PostgreSQL channel every versioned write
// transaction notifies before commit, with its highest version as payload.
const NotifyChannel = "keygate_changes"

// dbTime converts a time for storage: UTC, truncated to the microsecond
// both databases keep, so that what is written reads back identically.
func dbTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// orNow returns t, or the current time when t is zero.
func orNow(t time.Time) time.Time {
	if t.IsZero() {
		return dbTime(time.Now())
	}
	return dbTime(t)
}

// scopesOrEmpty returns s, or an empty non-nil slice for nil.
func scopesOrEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// invalidRecord refuses a key record or grant that cannot be stored, before
// any statement runs; its text says why.
type invalidRecord string

func (e invalidRecord) Error() string { return string(e) }

// prepareKey validates a record for insertion and normalises it as it will
// be stored: times in UTC at microsecond precision, CreatedAt defaulted to
// now, Lineage defaulted to the key's own ID, scopes never nil.
func prepareKey(r keys.Record) (keys.Record, error) {
	if r.ID == "" {
		return r, invalidRecord("key record has no ID")
	}
	if r.Hash == (keys.Hash{}) {
		return r, invalidRecord(fmt.Sprintf("key record %s has an all-zero hash", r.ID))
	}
	if r.Lineage == "" {
		r.Lineage = r.ID
	}
	r.CreatedAt = orNow(r.CreatedAt)
	r.ExpiresAt = dbTime(r.ExpiresAt)
	r.RevokedAt = dbTime(r.RevokedAt)
	r.LastUsedAt = dbTime(r.LastUsedAt)
	r.RolledAt = dbTime(r.RolledAt)
	r.Scopes = append([]string{}, r.Scopes...)
	if err := prepareRestrictions(&r); err != nil {
		return r, err
	}
	return r, nil
}

// prepareGrant validates a grant for SetGrant and normalises it.
func prepareGrant(g keys.Grant) (keys.Grant, error) {
	if g.Tenant == "" || g.Org == "" {
		return g, invalidRecord(fmt.Sprintf("grant needs a tenant and an organization, got tenant %q org %q", g.Tenant, g.Org))
	}
	g.UpdatedAt = orNow(g.UpdatedAt)
	if g.CreatedAt.IsZero() {
		g.CreatedAt = g.UpdatedAt
	}
	g.CreatedAt = dbTime(g.CreatedAt)
	g.RevokedAt = dbTime(g.RevokedAt)
	g.Scopes = append([]string{}, g.Scopes...)
	return g, nil
}

// rollOld computes the rolled-over key's new state: RollKey's rules.
func rollOld(old keys.Record, nextID string, now, oldExpires time.Time) keys.Record {
	old.RolledAt = orNow(now)
	old.ReplacedBy = nextID
	oldExpires = dbTime(oldExpires)
	if !oldExpires.IsZero() && (old.ExpiresAt.IsZero() || oldExpires.Before(old.ExpiresAt)) {
		old.ExpiresAt = oldExpires
	}
	return old
}

// mergeChanges builds a Changes page from keys and grants, each already in
// version order and each fetched with up to limit+1 rows (limit <= 0: all).
func mergeChanges(after int64, limit int, ks []keys.Record, gs []keys.Grant) Changes {
	ch := Changes{Version: after, Keys: []keys.Record{}, Grants: []keys.Grant{}}
	i, j := 0, 0
	for i < len(ks) || j < len(gs) {
		if limit > 0 && i+j == limit {
			ch.More = true
			break
		}
		if j == len(gs) || (i < len(ks) && ks[i].Version < gs[j].Version) {
			ch.Keys = append(ch.Keys, ks[i])
			ch.Version = ks[i].Version
			i++
		} else {
			ch.Grants = append(ch.Grants, gs[j])
			ch.Version = gs[j].Version
			j++
		}
	}
	return ch
}

// errRevoked is the refusal to change a revoked key.
func errRevoked(id string) error {
	return fmt.Errorf("key %s is %w", id, ErrRevoked)
}

// revoke marks r revoked at at (zero: now), once.
func revoke(r *keys.Record, at time.Time) error {
	if !r.RevokedAt.IsZero() {
		return errRevoked(r.ID)
	}
	r.RevokedAt = orNow(at)
	return nil
}

// setExpiry changes r's expiry (zero: never); a revoked key is final.
func setExpiry(r *keys.Record, at time.Time) error {
	if !r.RevokedAt.IsZero() {
		return errRevoked(r.ID)
	}
	r.ExpiresAt = dbTime(at)
	return nil
}

// prepareRoll checks that old may be rolled and returns next as it will be
// inserted: in old's lineage.
func prepareRoll(old, next keys.Record) (keys.Record, error) {
	switch {
	case !old.RevokedAt.IsZero():
		return next, errRevoked(old.ID)
	case old.ReplacedBy != "":
		return next, fmt.Errorf("key %s was %w to %s", old.ID, ErrRolled, old.ReplacedBy)
	}
	next.Lineage = old.Lineage
	return prepareKey(next)
}
