package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/keys"
)

// keyDB is DB's reads and versioned writes, written once on top of a
// dialect. SQLite and Postgres embed it and add what only they do:
// connections, Migrate, TouchLastUsed, BulkInsertKeys and Listen.
type keyDB struct {
	name  string // of the database, in technical errors: "sqlite", "postgres"
	d     dialect
	sql   dialectSQL
	reads queries // on the read connections
	opts  Options
}

func (k *keyDB) timeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, k.opts.QueryTimeout)
}

// named words the driver's "no rows" or uniqueness violation as a
// sentence about subject ("key key_x not found", wrapping ErrNotFound);
// any other error, and nil, pass unchanged.
func (k *keyDB) named(err error, subject string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s %w", subject, ErrNotFound)
	case k.d.duplicate(err):
		return fmt.Errorf("%s %w", subject, ErrConflict)
	}
	return err
}

// failed names the database in a technical error ("postgres: timeout:
// context deadline exceeded"); the caller knows what it asked for and says
// so. A refusal (an invalidRecord, or an error that wraps a sentinel) is a
// sentence about its subject already and is returned as it is.
func (k *keyDB) failed(err error) error {
	if err == nil || worded(err) {
		return err
	}
	return fmt.Errorf("%s: %w", k.name, err)
}

func worded(err error) bool {
	for _, s := range []error{ErrNotFound, ErrConflict, ErrRevoked, ErrRolled} {
		if errors.Is(err, s) {
			return true
		}
	}
	var ir invalidRecord
	return errors.As(err, &ir)
}

// write runs fn in one versioned write transaction bounded by QueryTimeout;
// see writeTx.
func (k *keyDB) write(ctx context.Context, fn func(ctx context.Context, tx *writeTx) error) error {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	return k.d.versioned(ctx, func(q queries) (int64, error) {
		tx := &writeTx{q: q, db: k}
		err := fn(ctx, tx)
		return tx.last, err
	})
}

// KeyByHash implements DB.
func (k *keyDB) KeyByHash(ctx context.Context, h keys.Hash) (keys.Record, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	r, err := k.reads.key(ctx, stmtKeyByHash, h[:])
	if err != nil {
		return keys.Record{}, k.failed(k.named(err, "key"))
	}
	return r, nil
}

// KeyByID implements DB.
func (k *keyDB) KeyByID(ctx context.Context, id string) (keys.Record, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	r, err := k.reads.key(ctx, stmtKeyByID, id)
	if err != nil {
		return keys.Record{}, k.failed(k.named(err, "key "+id))
	}
	return r, nil
}

// ListKeys implements DB.
func (k *keyDB) ListKeys(ctx context.Context, f ListFilter) ([]keys.Record, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	q, args := listKeysQuery(f)
	rs, err := k.reads.keys(ctx, q, args...)
	return rs, k.failed(err)
}

// ActiveKeys implements DB.
func (k *keyDB) ActiveKeys(ctx context.Context, now time.Time, afterID string, limit int) ([]keys.Record, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	q, args := withLimit(stmtActiveKeys, []any{afterID, k.reads.time(now)}, limit)
	rs, err := k.reads.keys(ctx, q, args...)
	return rs, k.failed(err)
}

// ListGrants implements DB.
func (k *keyDB) ListGrants(ctx context.Context, tenant string) ([]keys.Grant, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	gs, err := k.reads.grants(ctx, stmtListGrants, tenant)
	return gs, k.failed(err)
}

// Version implements DB.
func (k *keyDB) Version(ctx context.Context) (int64, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	v, err := k.reads.scalar(ctx, k.sql.version)
	return v, k.failed(err)
}

// Changes implements DB. Both tables are read from one snapshot, and the
// dialect's versioned writes make versions visible in order, so the page
// holds every version up to the highest it holds.
func (k *keyDB) Changes(ctx context.Context, after int64, limit int) (Changes, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	n := limit + 1 // one row more than asked for tells whether there are more
	if limit <= 0 {
		n = 0
	}
	kq, kargs := withLimit(stmtKeysAfter, []any{after}, n)
	gq, gargs := withLimit(stmtGrantsAfter, []any{after}, n)
	var (
		ks []keys.Record
		gs []keys.Grant
	)
	err := k.d.snapshot(ctx, func(q queries) error {
		var err error
		if ks, err = q.keys(ctx, kq, kargs...); err != nil {
			return err
		}
		gs, err = q.grants(ctx, gq, gargs...)
		return err
	})
	if err != nil {
		return Changes{}, k.failed(err)
	}
	return mergeChanges(after, limit, ks, gs), nil
}

// InsertKey implements DB.
func (k *keyDB) InsertKey(ctx context.Context, r keys.Record) (keys.Record, error) {
	r, err := prepareKey(r)
	if err != nil {
		return keys.Record{}, err
	}
	action := ActionKeyCreated
	if r.Imported {
		action = ActionKeyImported
	}
	err = k.write(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := tx.insertKey(ctx, &r); err != nil {
			return err
		}
		return tx.audit(ctx, action, r.Tenant, r.ID, keyDetails(r))
	})
	if err != nil {
		return keys.Record{}, k.failed(err)
	}
	return r, nil
}

// keyDetails is what an audit event says of a new key: never its hash.
func keyDetails(r keys.Record) map[string]any {
	d := map[string]any{"name": r.Name, "env": string(r.Env), "scopes": r.Scopes, "plan": r.Plan, "prefix": r.Prefix}
	if !r.ExpiresAt.IsZero() {
		d["expires_at"] = r.ExpiresAt
	}
	return d
}

// updateKey loads key id in a write transaction, lets change edit it (or
// refuse with an error, returned with the unchanged record), and stores
// the edited record with a new version and the audit event action, whose
// details change returns.
func (k *keyDB) updateKey(ctx context.Context, id, action string, change func(r *keys.Record) (map[string]any, error)) (keys.Record, error) {
	var out keys.Record
	err := k.write(ctx, func(ctx context.Context, tx *writeTx) error {
		r, err := tx.lockKey(ctx, id)
		if err != nil {
			return err
		}
		out = r
		details, err := change(&r)
		if err != nil {
			return err
		}
		if err := tx.updateKey(ctx, &r); err != nil {
			return err
		}
		if err := tx.audit(ctx, action, r.Tenant, r.ID, details); err != nil {
			return err
		}
		out = r
		return nil
	})
	return out, k.failed(err)
}

// RevokeKey implements DB.
func (k *keyDB) RevokeKey(ctx context.Context, id string, at time.Time) (keys.Record, error) {
	return k.updateKey(ctx, id, ActionKeyRevoked, func(r *keys.Record) (map[string]any, error) {
		return map[string]any{"prefix": r.Prefix}, revoke(r, at)
	})
}

// SetExpiry implements DB. A revoked key is left alone (ErrRevoked).
func (k *keyDB) SetExpiry(ctx context.Context, id string, at time.Time) (keys.Record, error) {
	return k.updateKey(ctx, id, ActionKeyExpiryChanged, func(r *keys.Record) (map[string]any, error) {
		d := map[string]any{"previous_expires_at": optionalTime(r.ExpiresAt)}
		err := setExpiry(r, at)
		d["expires_at"] = optionalTime(r.ExpiresAt)
		return d, err
	})
}

// RollKey implements DB. ErrNotFound for an unknown oldID, ErrRevoked for
// a revoked one, ErrRolled for one already rolled, ErrConflict when next's
// hash or ID exists; in every case nothing is written.
func (k *keyDB) RollKey(ctx context.Context, oldID string, next keys.Record, now, oldExpires time.Time) (old, created keys.Record, err error) {
	err = k.write(ctx, func(ctx context.Context, tx *writeTx) error {
		o, err := tx.lockKey(ctx, oldID)
		if err != nil {
			return err
		}
		old = o
		n, err := prepareRoll(o, next)
		if err != nil {
			return err
		}
		if err := tx.insertKey(ctx, &n); err != nil {
			return err
		}
		o = rollOld(o, n.ID, now, oldExpires)
		if err := tx.updateKey(ctx, &o); err != nil {
			return err
		}
		details := map[string]any{"new_key_id": n.ID, "new_prefix": n.Prefix, "old_expires_at": optionalTime(o.ExpiresAt)}
		if !o.ExpiresAt.IsZero() {
			details["grace"] = o.ExpiresAt.Sub(o.RolledAt).String()
		}
		if err := tx.audit(ctx, ActionKeyRolled, o.Tenant, o.ID, details); err != nil {
			return err
		}
		old, created = o, n
		return nil
	})
	if err != nil {
		return old, keys.Record{}, k.failed(err)
	}
	return old, created, nil
}

// SetGrant implements DB.
func (k *keyDB) SetGrant(ctx context.Context, g keys.Grant) (keys.Grant, error) {
	g, err := prepareGrant(g)
	if err != nil {
		return keys.Grant{}, err
	}
	var out keys.Grant
	err = k.write(ctx, func(ctx context.Context, tx *writeTx) error {
		var err error
		if out, err = tx.putGrant(ctx, g); err != nil {
			return err
		}
		return tx.audit(ctx, ActionGrantSet, g.Tenant, "", map[string]any{"org": g.Org, "scopes": g.Scopes})
	})
	if err != nil {
		return keys.Grant{}, k.failed(err)
	}
	return out, nil
}

// RevokeGrant implements DB.
func (k *keyDB) RevokeGrant(ctx context.Context, tenant, org string, at time.Time) (keys.Grant, error) {
	at = orNow(at)
	var out keys.Grant
	err := k.write(ctx, func(ctx context.Context, tx *writeTx) error {
		var err error
		if out, err = tx.revokeGrant(ctx, tenant, org, at); err != nil {
			return err
		}
		return tx.audit(ctx, ActionGrantRevoked, tenant, "", map[string]any{"org": org})
	})
	if err != nil {
		return keys.Grant{}, k.failed(err)
	}
	return out, nil
}
