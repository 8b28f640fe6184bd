package store

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/keys"
)

// Errors callers check with errors.Is. Any other error is a technical
// failure (database down, timeout) and must never be read as "unknown key".
// Each is wrapped in a sentence about its subject, which reads once:
// "key key_x not found", "key key_x is revoked".
var (
	// ErrNotFound: no key or grant (in force) has the id asked for.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a key with the same hash (or id) exists already.
	ErrConflict = errors.New("already exists")
	// ErrRevoked: the operation needs an active key and the key is revoked.
	ErrRevoked = errors.New("revoked")
	// ErrRolled: RollKey was asked to roll a key that a roll already
	// replaced; roll its replacement instead.
	ErrRolled = errors.New("already rolled")
)

// ListFilter selects keys for listing. Results are ordered by ID.
type ListFilter struct {
	Tenant         string // empty: all tenants
	IncludeRevoked bool
	After          string // ID cursor: only keys with ID > After
	Limit          int    // 0: no limit
}

// Changes is one page of the change feed: every key and grant written with
// a version greater than the one asked for, in version order.
type Changes struct {
	Keys   []keys.Record
	Grants []keys.Grant
	// Version is the highest version in this page, or the one asked for
	// when the page is empty; pass it to the next Changes call.
	Version int64
	// More is set when limit cut the page short.
	More bool
}

// DB is the key database. Every write bumps the written row's Version from
// one monotonic sequence shared by keys and grants (TouchLastUsed excepted:
// it is bookkeeping, not a change any cache must see).
type DB interface {
	// Migrate brings the schema up to date; safe to run from several
	// processes at once.
	Migrate(ctx context.Context) error
	// Ping checks that the database answers, for readiness probes.
	Ping(ctx context.Context) error
	// Close releases the connections; the DB is unusable afterwards.
	Close() error

	// KeyByHash and KeyByID return a key whatever its status;
	// ErrNotFound if there is none.
	KeyByHash(ctx context.Context, h keys.Hash) (keys.Record, error)
	KeyByID(ctx context.Context, id string) (keys.Record, error)
	// ListKeys lists keys as f selects, ordered by ID.
	ListKeys(ctx context.Context, f ListFilter) ([]keys.Record, error)
	// ActiveKeys pages through keys that are neither revoked nor expired
	// at now, ordered by ID, for warming a cache (limit <= 0: no limit).
	ActiveKeys(ctx context.Context, now time.Time, afterID string, limit int) ([]keys.Record, error)
	// InsertKey stores a new key; ErrConflict if its hash or ID exists.
	// It returns the record as stored: times in UTC at microsecond
	// precision, a zero CreatedAt set to now, an empty Lineage set to the
	// ID, nil Scopes as empty, and the new Version.
	InsertKey(ctx context.Context, r keys.Record) (keys.Record, error)
	// RevokeKey sets revoked_at (once: revoking a revoked key returns it
	// unchanged with ErrRevoked). ErrNotFound for an unknown id. A zero
	// at means now.
	RevokeKey(ctx context.Context, id string, at time.Time) (keys.Record, error)
	// UpdateKey changes a key's allowed networks and metadata (the fields
	// of u that are set), validated as keys.ParseCIDRs and
	// keys.ValidateMetadata would, with the audit event key.updated.
	// ErrNotFound for an unknown id; a revoked key is returned unchanged
	// with ErrRevoked.
	UpdateKey(ctx context.Context, id string, u KeyUpdate) (keys.Record, error)
	// SetExpiry changes a key's expires_at (zero: never). ErrNotFound for
	// an unknown id; a revoked key is returned unchanged with ErrRevoked.
	SetExpiry(ctx context.Context, id string, at time.Time) (keys.Record, error)
	// RollKey, in one transaction, inserts next (same lineage as old) and
	// marks old as rolled (RolledAt=now, ReplacedBy=next.ID,
	// ExpiresAt=oldExpires unless old already expires sooner; a zero
	// oldExpires leaves ExpiresAt alone). A zero next.CreatedAt means now.
	// ErrNotFound for an unknown oldID, ErrRevoked for a revoked old key,
	// ErrRolled for one already rolled, ErrConflict when next's hash or ID
	// exists; on any error nothing is written and old is returned as
	// stored (zero if not found).
	RollKey(ctx context.Context, oldID string, next keys.Record, now, oldExpires time.Time) (old, created keys.Record, err error)
	// AuditEvents lists audit events as f selects, newest first. Every
	// change above writes one, in its own transaction, with the Origin
	// its context carries.
	AuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// PruneAudit deletes the events made before before and says how many.
	PruneAudit(ctx context.Context, before time.Time) (int64, error)

	// Outbox is the events outbox and the webhook deliveries.
	Outbox
	// Sessions are the portal's and the console's sessions.
	Sessions

	// TouchLastUsed records use times by key ID, never moving one back.
	TouchLastUsed(ctx context.Context, used map[string]time.Time) error
	// AddUsage adds each row's counts to its key's hour (Start rounded
	// down), in one statement or transaction, to whatever is there:
	// replicas' counts of the same key and hour add up. All or nothing;
	// bounded by ctx only (a large batch takes longer than QueryTimeout).
	AddUsage(ctx context.Context, batch []UsageCount) error
	// Usage returns the buckets f selects that have counts, oldest first.
	Usage(ctx context.Context, f UsageFilter) ([]UsageCount, error)
	// PruneUsage deletes the rows of the hours before before's hour and
	// says how many; bounded by ctx (it deletes an hour at a time).
	PruneUsage(ctx context.Context, before time.Time) (int64, error)

	// SetGrant creates or replaces the grant for (Tenant, Org). A zero
	// UpdatedAt means now, a zero CreatedAt UpdatedAt; replacing a grant in
	// force keeps its CreatedAt, and setting a revoked one starts it anew.
	SetGrant(ctx context.Context, g keys.Grant) (keys.Grant, error)
	// RevokeGrant ends a grant; ErrNotFound if none is in force. A zero
	// at means now.
	RevokeGrant(ctx context.Context, tenant, org string, at time.Time) (keys.Grant, error)
	// ListGrants lists grants in force, for one tenant or (empty) all.
	ListGrants(ctx context.Context, tenant string) ([]keys.Grant, error)

	// Changes returns up to limit changed keys and grants after version
	// (limit <= 0: all of them), read from one consistent snapshot. A
	// poller that passes each page's Version to its next call sees every
	// write exactly once or a later write of the same row.
	Changes(ctx context.Context, after int64, limit int) (Changes, error)
	// Version is the newest version written so far (committed and
	// visible to Changes): a cache that reads Version before loading keys
	// and then polls Changes from it misses nothing.
	Version(ctx context.Context) (int64, error)
}

// Notifier is implemented by databases that can push change notices
// (PostgreSQL LISTEN/NOTIFY). Listen blocks until ctx ends, reconnecting by
// itself; it calls changed after every notice and after every (re)connect,
// so the caller catches up on whatever it missed while disconnected.
type Notifier interface {
	Listen(ctx context.Context, changed func()) error
}
