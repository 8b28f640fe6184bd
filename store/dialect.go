package store

import (
	"context"
	"net/netip"
	"time"

	"github.com/keygate/keygate/keys"
)

// dialect is what differs between SQLite and PostgreSQL under DB's reads
// and versioned writes: how a snapshot and a versioned write transaction
// are opened and locked, the few statements whose text differs, and how
// the driver reports a uniqueness violation. keyDB writes the rest once.
type dialect interface {
	// snapshot runs fn in a read-only transaction that sees one snapshot
	// of both tables.
	snapshot(ctx context.Context, fn func(queries) error) error
	// versioned runs fn in a write transaction that holds the right to
	// draw versions until it ends (SQLite: BEGIN IMMEDIATE on the one
	// writer connection; PostgreSQL: the version lock), so that versions
	// become visible in the order they were drawn. It commits when fn
	// returns nil, announcing last, the highest version fn drew (0: none),
	// where the database can (PostgreSQL: NOTIFY).
	versioned(ctx context.Context, fn func(queries) (last int64, err error)) error
	// tx runs fn in a write transaction that draws no version and takes
	// no version lock (SQLite: BEGIN IMMEDIATE on the one writer
	// connection): the outbox's own bookkeeping, which no cache follows.
	tx(ctx context.Context, fn func(queries) error) error
	// duplicate reports whether err is a uniqueness violation. ("No rows"
	// is sql.ErrNoRows for both drivers: pgx.ErrNoRows wraps it.)
	duplicate(err error) bool
}

// dialectSQL is the statements whose text differs between the dialects.
type dialectSQL struct {
	// nextVersions reserves $1 consecutive versions; it returns the last.
	nextVersions string
	// version returns the newest committed version.
	version string
	// lockKey reads key $1 and keeps other writers off it until the
	// transaction ends.
	lockKey string
	// undispatched reads up to $1 undispatched outbox events, oldest
	// first, skipping those another transaction holds (PostgreSQL).
	undispatched string
	// dueDeliveries reads up to $2 pending deliveries due at $1 with
	// their events, earliest first, skipping those another transaction
	// holds (PostgreSQL).
	dueDeliveries string
	// oldestUndelivered returns, in Unix microseconds (0: none), the time
	// of the oldest event not yet dispatched or with a pending delivery.
	oldestUndelivered string
}

// queries runs statements on a dialect's read connections or in one of its
// transactions, encoding arguments and scanning rows the dialect's way.
// Statements use $N placeholders, which both drivers bind by number.
type queries interface {
	codec
	key(ctx context.Context, query string, args ...any) (keys.Record, error)
	keys(ctx context.Context, query string, args ...any) ([]keys.Record, error) // never nil
	grant(ctx context.Context, query string, args ...any) (keys.Grant, error)
	grants(ctx context.Context, query string, args ...any) ([]keys.Grant, error) // never nil
	events(ctx context.Context, query string, args ...any) ([]AuditEvent, error) // never nil
	outbox(ctx context.Context, query string, args ...any) ([]Event, error)      // never nil
	deliveries(ctx context.Context, query string, args ...any) ([]Delivery, error)
	scalar(ctx context.Context, query string, args ...any) (int64, error)
	session(ctx context.Context, query string, args ...any) (Session, error)
	exec(ctx context.Context, query string, args ...any) error
	// affected runs a statement and returns how many rows it changed.
	affected(ctx context.Context, query string, args ...any) (int64, error)
}

// codec encodes the values the dialects store differently: SQLite keeps
// times as INTEGER microseconds and scopes as a JSON array, PostgreSQL as
// timestamptz and text[]. The zero time is NULL in both.
type codec interface {
	time(t time.Time) any
	scopes(s []string) any
	cidrs(ps []netip.Prefix) any
	metadata(m map[string]string) any
}

// writeTx is one versioned write transaction as DB's rules see it. Every
// key and grant change goes through its methods, which draw the change's
// version and word the database's refusals, so whatever must commit
// together with a change (an audit event, an outbox row) is added here,
// once, for both databases.
type writeTx struct {
	q    queries
	db   *keyDB
	last int64 // the highest version drawn
	// The records read or written in this transaction, as they stand now:
	// an audit event's outbox entry carries its subject as it was.
	keys  map[string]keys.Record
	grant *keys.Grant
}

// saw notes r as it stands in this transaction.
func (t *writeTx) saw(r keys.Record) {
	if t.keys == nil {
		t.keys = map[string]keys.Record{}
	}
	t.keys[r.ID] = r
}

// subject is the key (by id) or, for "", the grant this transaction
// changed, for an event about it; a key it has not seen is read.
func (t *writeTx) subject(ctx context.Context, keyID string) (*keys.Record, *keys.Grant, error) {
	if keyID == "" {
		return nil, t.grant, nil
	}
	r, ok := t.keys[keyID]
	if !ok {
		var err error
		if r, err = t.q.key(ctx, stmtKeyByID, keyID); err != nil {
			return nil, nil, t.db.named(err, "key "+keyID)
		}
	}
	r.Hash = keys.Hash{}
	return &r, nil, nil
}

func (t *writeTx) nextVersion(ctx context.Context) (int64, error) {
	v, err := t.q.scalar(ctx, t.db.sql.nextVersions, 1)
	if err != nil {
		return 0, err
	}
	t.last = v
	return v, nil
}

// lockKey reads key id for a change.
func (t *writeTx) lockKey(ctx context.Context, id string) (keys.Record, error) {
	r, err := t.q.key(ctx, t.db.sql.lockKey, id)
	if err == nil {
		t.saw(r)
	}
	return r, t.db.named(err, "key "+id)
}

// insertKey stores r with a new version.
func (t *writeTx) insertKey(ctx context.Context, r *keys.Record) error {
	v, err := t.nextVersion(ctx)
	if err != nil {
		return err
	}
	r.Version = v
	if err := t.q.exec(ctx, stmtInsertKey, keyArgs(t.q, r)...); err != nil {
		return t.db.named(err, "key "+r.ID+" or its hash")
	}
	t.saw(*r)
	return nil
}

// updateKey stores r's mutable fields (expiry, revocation, roll, allowed
// networks, metadata) with a new version.
func (t *writeTx) updateKey(ctx context.Context, r *keys.Record) error {
	v, err := t.nextVersion(ctx)
	if err != nil {
		return err
	}
	r.Version = v
	if err := t.q.exec(ctx, stmtUpdateKey, t.q.time(r.ExpiresAt), t.q.time(r.RevokedAt), t.q.time(r.RolledAt),
		nullString(r.ReplacedBy), r.Version, t.q.cidrs(r.AllowedCIDRs), t.q.metadata(r.Metadata), r.ID); err != nil {
		return err
	}
	t.saw(*r)
	return nil
}

// putGrant stores g with a new version, replacing the grant for its
// (Tenant, Org).
func (t *writeTx) putGrant(ctx context.Context, g keys.Grant) (keys.Grant, error) {
	v, err := t.nextVersion(ctx)
	if err != nil {
		return keys.Grant{}, err
	}
	out, err := t.q.grant(ctx, stmtPutGrant, g.Tenant, g.Org, t.q.scopes(g.Scopes), t.q.time(g.CreatedAt),
		t.q.time(g.UpdatedAt), t.q.time(g.RevokedAt), v)
	if err == nil {
		t.grant = &out
	}
	return out, err
}

// revokeGrant ends the grant of tenant in org, if one is in force, with a
// new version.
func (t *writeTx) revokeGrant(ctx context.Context, tenant, org string, at time.Time) (keys.Grant, error) {
	v, err := t.nextVersion(ctx)
	if err != nil {
		return keys.Grant{}, err
	}
	g, err := t.q.grant(ctx, stmtRevokeGrant, t.q.time(at), v, tenant, org)
	if err == nil {
		t.grant = &g
	}
	return g, t.db.named(err, grantName(tenant, org))
}

func grantName(tenant, org string) string {
	return "grant of tenant " + tenant + " in org " + org
}
