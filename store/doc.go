// Package store is Keygate's key database: key records (by hash, never the
// key itself), organization grants, and the change feed that keeps every
// replica's cache current. SQLite (embedded, the default) and PostgreSQL
// implement the same DB interface and pass the same test suite.
//
// # Opening
//
// Open picks the database by URL and leaves the schema alone; Migrate
// brings it up to date and is safe to run from several processes at once:
//
//	db, err := store.Open(ctx, "sqlite:keygate.db", store.Options{})
//	// or "postgres://keygate@db.internal/keygate"
//	if err != nil {
//		return err
//	}
//	defer db.Close()
//	if err := db.Migrate(ctx); err != nil {
//		return err
//	}
//
// Every call but Migrate, BulkInsertKeys and Listen is bounded by
// Options.QueryTimeout.
//
// # Errors
//
// A refusal wraps one of ErrNotFound, ErrConflict, ErrRevoked or ErrRolled
// in a sentence about its subject that reads once:
//
//	_, err := db.RevokeKey(ctx, "key_x", time.Time{})
//	errors.Is(err, store.ErrNotFound) // true
//	err.Error()                       // "key key_x not found"
//
// A record that cannot be stored is refused with the reason ("key record
// key_x has an all-zero hash"). Any other error is a technical failure that
// names the database ("postgres: timeout: context deadline exceeded"; the
// caller says what it was doing) and must never be read as "unknown key".
//
// # Change feed
//
// Every write of a key or grant takes the next version from one sequence
// shared by both tables. A cache reads Version, loads what it needs, then
// polls Changes from that version, passing each page's Version to the next
// call: it sees every write once, or a later write of the same row.
// PostgreSQL also implements Notifier, whose Listen calls back after every
// such write (and every reconnect), so that a poller can wait for a notice
// instead of a timer.
//
// # Events outbox
//
// Every audit event is also added to the events outbox, in the same
// transaction and under the same id, with the key or grant as the change
// left it (never a hash); AddEvents adds Keygate's own notices, made
// idempotent by a dedupe key. The events package delivers them as
// webhooks: DispatchEvents makes one delivery per endpoint that wants an
// event, ClaimDeliveries holds due deliveries under a lease (PostgreSQL:
// FOR UPDATE SKIP LOCKED, so replicas share the work without sending
// anything twice), and FinishDelivery stores an attempt's result only
// under the lease it was claimed with.
//
// # Bulk loading
//
// Both databases implement BulkInserter for seeding large test and
// benchmark data sets: PostgreSQL with COPY, SQLite with large batches
// through one prepared statement.
//
// # Inside
//
// What differs between the two databases — opening and locking a write
// transaction, a handful of statements, encoding times and scopes, spotting
// a duplicate — sits behind the unexported dialect and queries interfaces.
// Reads, the key and grant rules, the write transaction's shape and error
// wording are written once above them; each key or grant change runs
// through one writeTx, where anything that must commit with the change
// belongs.
package store
