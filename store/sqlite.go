package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keygate/keygate/keys"
)

// SQLite is the embedded key database: one file, written through exactly
// one connection (SQLite has one writer at a time; a single connection
// queues writers in Go instead of spinning on SQLITE_BUSY) and read through
// a pool (WAL lets readers run while the writer writes). Every write is a
// BEGIN IMMEDIATE transaction, so a second process writing the same file
// (the CLI next to a running server) waits its turn under busy_timeout
// rather than failing.
//
// Versions come from the one-row table version_counter, bumped inside each
// write transaction; SQLite serialises writers, so versions commit in order.
type SQLite struct {
	path   string
	w      *sql.DB
	r      *sql.DB
	opts   Options
	byHash lazyStmt // the hot path: prepared once, not per lookup
}

// lazyStmt is a statement prepared on first use: not at Open, because
// before Migrate its tables may not exist yet.
type lazyStmt struct {
	query string
	mu    sync.Mutex // serialises preparing
	st    atomic.Pointer[sql.Stmt]
}

func (l *lazyStmt) get(ctx context.Context, db *sql.DB) (*sql.Stmt, error) {
	if st := l.st.Load(); st != nil {
		return st, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.st.Load(); st != nil {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, l.query)
	if err != nil {
		return nil, err
	}
	l.st.Store(st)
	return st, nil
}

func (l *lazyStmt) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.st.Load(); st != nil {
		return st.Close()
	}
	return nil
}

var (
	_ DB           = (*SQLite)(nil)
	_ BulkInserter = (*SQLite)(nil)
)

// sqliteCacheSize is the writer's page cache: 32 MiB (negative: KiB).
const sqliteCacheSize = "-32768"

// OpenSQLite opens (creating if needed) the SQLite database file at path.
// The file's directory must exist. Open does not touch the schema.
func OpenSQLite(ctx context.Context, path string, opts Options) (*SQLite, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	switch {
	case path == "":
		return nil, errors.New("store: sqlite: empty path; use sqlite:PATH, e.g. sqlite:keygate.db")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return nil, fmt.Errorf("store: sqlite: %q is not supported; give a file path, e.g. sqlite:keygate.db", path)
	case strings.ContainsRune(path, '?'):
		return nil, fmt.Errorf("store: sqlite: path %q: '?' and query parameters are not supported", path)
	}
	dir := filepath.Dir(path)
	switch st, err := os.Stat(dir); {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("store: sqlite: directory %s of database %s does not exist", dir, path)
	case err != nil:
		return nil, fmt.Errorf("store: sqlite: directory %s of database %s: %w", dir, path, err)
	case !st.IsDir():
		return nil, fmt.Errorf("store: sqlite: %s (directory of database %s) is not a directory", dir, path)
	}

	busy := strconv.FormatInt(opts.QueryTimeout.Milliseconds(), 10)
	w, err := sql.Open("sqlite", path+"?_txlock=immediate&_journal_mode=WAL&_pragma=cache_size("+sqliteCacheSize+")&_busy_timeout="+busy)
	if err != nil {
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	// The writer connects first: it switches the file to WAL, which the
	// query-only readers could not.
	if err := pingTimeout(ctx, w, opts.ConnectTimeout); err != nil {
		w.Close()
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?_query_only=1&_busy_timeout="+busy)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(opts.MaxConns)
	r.SetMaxIdleConns(opts.MaxConns)
	if err := pingTimeout(ctx, r, opts.ConnectTimeout); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("store: sqlite: open %s: %w", path, err)
	}
	return &SQLite{path: path, w: w, r: r, opts: opts,
		byHash: lazyStmt{query: `SELECT ` + keyColumns + ` FROM keys WHERE hash = ?`}}, nil
}

func pingTimeout(ctx context.Context, db *sql.DB, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return db.PingContext(ctx)
}

// Path returns the database file's path.
func (s *SQLite) Path() string { return s.path }

// Close implements DB.
func (s *SQLite) Close() error {
	return errors.Join(s.byHash.close(), s.r.Close(), s.w.Close())
}

// Ping implements DB.
func (s *SQLite) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store: sqlite: ping: %w", err)
	}
	return nil
}

// Migrate implements DB. BEGIN IMMEDIATE makes concurrent migrations from
// several processes take turns; each sees what the previous one applied.
func (s *SQLite) Migrate(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at INTEGER NOT NULL
)`); err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	applied, err := sqliteApplied(ctx, tx)
	if err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	for _, m := range migrations() {
		if applied[m.version] {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sqlite); err != nil {
			return fmt.Errorf("store: sqlite: migration %d (%s): %w", m.version, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("store: sqlite: migration %d (%s): %w", m.version, m.name, err)
		}
		s.opts.Logger.InfoContext(ctx, "applied schema migration", "database", "sqlite", "version", m.version, "name", m.name)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: sqlite: migrate: %w", err)
	}
	return nil
}

func sqliteApplied(ctx context.Context, tx *sql.Tx) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	applied := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		applied[v] = true
	}
	return applied, rows.Err()
}

// sqlQuerier is what *sql.DB and *sql.Tx share.
type sqlQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const keyColumns = `id, hash, prefix, last4, tenant, name, env, scopes, plan, lineage, created_at, expires_at, revoked_at, last_used_at, rolled_at, replaced_by, imported, version`

const grantColumns = `tenant, org, scopes, created_at, updated_at, revoked_at, version`

// KeyByHash implements DB.
func (s *SQLite) KeyByHash(ctx context.Context, h keys.Hash) (keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	st, err := s.byHash.get(ctx, s.r)
	if err != nil {
		return keys.Record{}, sqliteErr("key by hash", err)
	}
	r, err := scanSQLiteKey(st.QueryRowContext(ctx, h[:]))
	if err != nil {
		return keys.Record{}, sqliteErr("key by hash", err)
	}
	return r, nil
}

// KeyByID implements DB.
func (s *SQLite) KeyByID(ctx context.Context, id string) (keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	r, err := sqliteKeyByID(ctx, s.r, id)
	if err != nil {
		return keys.Record{}, sqliteErr("key "+id, err)
	}
	return r, nil
}

func sqliteKeyByID(ctx context.Context, q sqlQuerier, id string) (keys.Record, error) {
	return scanSQLiteKey(q.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM keys WHERE id = ?`, id))
}

// ListKeys implements DB.
func (s *SQLite) ListKeys(ctx context.Context, f ListFilter) ([]keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	q := `SELECT ` + keyColumns + ` FROM keys WHERE id > ?`
	args := []any{f.After}
	if f.Tenant != "" {
		q += ` AND tenant = ?`
		args = append(args, f.Tenant)
	}
	if !f.IncludeRevoked {
		q += ` AND revoked_at IS NULL`
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, sqliteLimit(f.Limit))
	rs, err := s.queryKeys(ctx, s.r, q, args...)
	if err != nil {
		return nil, sqliteErr("list keys", err)
	}
	return rs, nil
}

// ActiveKeys implements DB.
func (s *SQLite) ActiveKeys(ctx context.Context, now time.Time, afterID string, limit int) ([]keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	n := dbTime(now).UnixMicro()
	rs, err := s.queryKeys(ctx, s.r, `SELECT `+keyColumns+` FROM keys
WHERE id > ? AND (revoked_at IS NULL OR revoked_at > ?) AND (expires_at IS NULL OR expires_at > ?)
ORDER BY id LIMIT ?`, afterID, n, n, sqliteLimit(limit))
	if err != nil {
		return nil, sqliteErr("active keys", err)
	}
	return rs, nil
}

// sqliteLimit maps "no limit" (<= 0) to SQLite's LIMIT -1.
func sqliteLimit(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

func (s *SQLite) queryKeys(ctx context.Context, q sqlQuerier, query string, args ...any) ([]keys.Record, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	rs := []keys.Record{}
	for rows.Next() {
		r, err := scanSQLiteKey(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// write runs fn in a write transaction bounded by QueryTimeout.
func (s *SQLite) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	return s.writeTx(ctx, fn)
}

func (s *SQLite) writeTx(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// sqliteVersions reserves n consecutive versions and returns the first.
func sqliteVersions(ctx context.Context, tx *sql.Tx, n int) (int64, error) {
	var last int64
	err := tx.QueryRowContext(ctx, `UPDATE version_counter SET value = value + ? WHERE id = 1 RETURNING value`, n).Scan(&last)
	if err != nil {
		return 0, fmt.Errorf("next version: %w", err)
	}
	return last - int64(n) + 1, nil
}

const sqliteInsertKey = `INSERT INTO keys (` + keyColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

func sqliteKeyArgs(r *keys.Record) ([]any, error) {
	scopes, err := json.Marshal(scopesOrEmpty(r.Scopes))
	if err != nil {
		return nil, err
	}
	return []any{r.ID, r.Hash[:], r.Prefix, r.Last4, r.Tenant, r.Name, string(r.Env), string(scopes), r.Plan, r.Lineage,
		r.CreatedAt.UnixMicro(), micros(r.ExpiresAt), micros(r.RevokedAt), micros(r.LastUsedAt), micros(r.RolledAt),
		nullString(r.ReplacedBy), r.Imported, r.Version}, nil
}

// InsertKey implements DB.
func (s *SQLite) InsertKey(ctx context.Context, r keys.Record) (keys.Record, error) {
	r, err := prepareKey(r)
	if err != nil {
		return keys.Record{}, err
	}
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return sqliteInsert(ctx, tx, &r)
	})
	if err != nil {
		return keys.Record{}, sqliteErr("insert key "+r.ID, err)
	}
	return r, nil
}

func sqliteInsert(ctx context.Context, tx *sql.Tx, r *keys.Record) error {
	v, err := sqliteVersions(ctx, tx, 1)
	if err != nil {
		return err
	}
	r.Version = v
	args, err := sqliteKeyArgs(r)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, sqliteInsertKey, args...)
	return err
}

// updateKey loads key id in a write transaction, lets change edit it (or
// refuse with an error, returned with the unchanged record), and stores
// the edited record with a new version.
func (s *SQLite) updateKey(ctx context.Context, op, id string, change func(r *keys.Record) error) (keys.Record, error) {
	var out keys.Record
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		r, err := sqliteKeyByID(ctx, tx, id)
		if err != nil {
			return err
		}
		out = r
		if err := change(&r); err != nil {
			return err
		}
		if err := sqliteUpdate(ctx, tx, &r); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return out, sqliteErr(op+" "+id, err)
	}
	return out, nil
}

// sqliteUpdate writes r's mutable fields with a new version.
func sqliteUpdate(ctx context.Context, tx *sql.Tx, r *keys.Record) error {
	v, err := sqliteVersions(ctx, tx, 1)
	if err != nil {
		return err
	}
	r.Version = v
	_, err = tx.ExecContext(ctx, `UPDATE keys SET expires_at = ?, revoked_at = ?, rolled_at = ?, replaced_by = ?, version = ? WHERE id = ?`,
		micros(r.ExpiresAt), micros(r.RevokedAt), micros(r.RolledAt), nullString(r.ReplacedBy), r.Version, r.ID)
	return err
}

// RevokeKey implements DB.
func (s *SQLite) RevokeKey(ctx context.Context, id string, at time.Time) (keys.Record, error) {
	return s.updateKey(ctx, "revoke key", id, func(r *keys.Record) error { return revoke(r, at) })
}

// SetExpiry implements DB. A revoked key is left alone (ErrRevoked).
func (s *SQLite) SetExpiry(ctx context.Context, id string, at time.Time) (keys.Record, error) {
	return s.updateKey(ctx, "set expiry of key", id, func(r *keys.Record) error { return setExpiry(r, at) })
}

// RollKey implements DB. ErrNotFound for an unknown oldID, ErrRevoked for
// a revoked one, ErrRolled for one already rolled, ErrConflict when next's
// hash or ID exists; in every case nothing is written.
func (s *SQLite) RollKey(ctx context.Context, oldID string, next keys.Record, now, oldExpires time.Time) (old, created keys.Record, err error) {
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		o, err := sqliteKeyByID(ctx, tx, oldID)
		if err != nil {
			return err
		}
		old = o
		n, err := prepareRoll(o, next)
		if err != nil {
			return err
		}
		if err := sqliteInsert(ctx, tx, &n); err != nil {
			return err
		}
		o = rollOld(o, n.ID, now, oldExpires)
		if err := sqliteUpdate(ctx, tx, &o); err != nil {
			return err
		}
		old, created = o, n
		return nil
	})
	if err != nil {
		return old, keys.Record{}, sqliteErr("roll key "+oldID, err)
	}
	return old, created, nil
}

// TouchLastUsed implements DB. It does not bump versions.
func (s *SQLite) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE keys SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for id, t := range used {
			if t.IsZero() {
				continue
			}
			if _, err := st.ExecContext(ctx, dbTime(t).UnixMicro(), id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return sqliteErr("touch last used", err)
	}
	return nil
}

// BulkInsertKeys implements BulkInserter: batches of rows through one
// prepared statement, one transaction per batch. Random hashes touch pages
// all over the hash index, so large batches and, for the duration, a large
// page cache on the writer connection (128 MiB) save most of the page
// writes; the cache goes back to its usual size afterwards.
func (s *SQLite) BulkInsertKeys(ctx context.Context, rs []keys.Record) error {
	const batch = 100_000
	if len(rs) == 0 {
		return nil
	}
	c, err := s.w.Conn(ctx)
	if err != nil {
		return sqliteErr("bulk insert keys", err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `PRAGMA cache_size = -131072`); err != nil {
		return sqliteErr("bulk insert keys", err)
	}
	defer c.ExecContext(context.WithoutCancel(ctx), `PRAGMA cache_size = `+sqliteCacheSize)
	for start := 0; start < len(rs); start += batch {
		end := min(start+batch, len(rs))
		tx, err := c.BeginTx(ctx, nil)
		if err != nil {
			return sqliteErr("bulk insert keys", err)
		}
		if err := sqliteBulk(ctx, tx, rs[start:end]); err != nil {
			tx.Rollback()
			return sqliteErr("bulk insert keys", err)
		}
		if err := tx.Commit(); err != nil {
			return sqliteErr("bulk insert keys", err)
		}
	}
	return nil
}

func sqliteBulk(ctx context.Context, tx *sql.Tx, rs []keys.Record) error {
	v, err := sqliteVersions(ctx, tx, len(rs))
	if err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, sqliteInsertKey)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := range rs {
		r, err := prepareKey(rs[i])
		if err != nil {
			return err
		}
		r.Version = v + int64(i)
		args, err := sqliteKeyArgs(&r)
		if err != nil {
			return err
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("key %s: %w", r.ID, err)
		}
	}
	return nil
}

// SetGrant implements DB.
func (s *SQLite) SetGrant(ctx context.Context, g keys.Grant) (keys.Grant, error) {
	g, err := prepareGrant(g)
	if err != nil {
		return keys.Grant{}, err
	}
	scopes, err := json.Marshal(g.Scopes)
	if err != nil {
		return keys.Grant{}, fmt.Errorf("store: set grant: %w", err)
	}
	var out keys.Grant
	err = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		v, err := sqliteVersions(ctx, tx, 1)
		if err != nil {
			return err
		}
		out, err = scanSQLiteGrant(tx.QueryRowContext(ctx, `INSERT INTO grants (`+grantColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (tenant, org) DO UPDATE SET
	scopes = excluded.scopes,
	created_at = CASE WHEN grants.revoked_at IS NULL THEN grants.created_at ELSE excluded.created_at END,
	updated_at = excluded.updated_at,
	revoked_at = excluded.revoked_at,
	version = excluded.version
RETURNING `+grantColumns,
			g.Tenant, g.Org, string(scopes), g.CreatedAt.UnixMicro(), g.UpdatedAt.UnixMicro(), micros(g.RevokedAt), v))
		return err
	})
	if err != nil {
		return keys.Grant{}, sqliteErr("set grant", err)
	}
	return out, nil
}

// RevokeGrant implements DB.
func (s *SQLite) RevokeGrant(ctx context.Context, tenant, org string, at time.Time) (keys.Grant, error) {
	at = orNow(at)
	var out keys.Grant
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		v, err := sqliteVersions(ctx, tx, 1)
		if err != nil {
			return err
		}
		out, err = scanSQLiteGrant(tx.QueryRowContext(ctx, `UPDATE grants SET revoked_at = ?, updated_at = ?, version = ?
WHERE tenant = ? AND org = ? AND revoked_at IS NULL RETURNING `+grantColumns,
			at.UnixMicro(), at.UnixMicro(), v, tenant, org))
		return err
	})
	if err != nil {
		return keys.Grant{}, sqliteErr(fmt.Sprintf("revoke grant of tenant %s in org %s", tenant, org), err)
	}
	return out, nil
}

// ListGrants implements DB.
func (s *SQLite) ListGrants(ctx context.Context, tenant string) ([]keys.Grant, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	gs, err := queryGrants(ctx, s.r, `SELECT `+grantColumns+` FROM grants
WHERE revoked_at IS NULL AND (? = '' OR tenant = ?) ORDER BY tenant, org`, tenant, tenant)
	if err != nil {
		return nil, sqliteErr("list grants", err)
	}
	return gs, nil
}

func queryGrants(ctx context.Context, q sqlQuerier, query string, args ...any) ([]keys.Grant, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	gs := []keys.Grant{}
	for rows.Next() {
		g, err := scanSQLiteGrant(rows)
		if err != nil {
			return nil, err
		}
		gs = append(gs, g)
	}
	return gs, rows.Err()
}

// Changes implements DB. Both queries run in one read transaction, so they
// see the same snapshot: a write committed between them cannot make the
// page skip an older version in the other table.
func (s *SQLite) Changes(ctx context.Context, after int64, limit int) (Changes, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return Changes{}, sqliteErr("changes", err)
	}
	defer tx.Rollback()
	n := limit + 1
	if limit <= 0 {
		n = -1
	}
	ks, err := s.queryKeys(ctx, tx, `SELECT `+keyColumns+` FROM keys WHERE version > ? ORDER BY version LIMIT ?`, after, n)
	if err != nil {
		return Changes{}, sqliteErr("changes", err)
	}
	gs, err := queryGrants(ctx, tx, `SELECT `+grantColumns+` FROM grants WHERE version > ? ORDER BY version LIMIT ?`, after, n)
	if err != nil {
		return Changes{}, sqliteErr("changes", err)
	}
	return mergeChanges(after, limit, ks, gs), nil
}

// Version implements DB.
func (s *SQLite) Version(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.QueryTimeout)
	defer cancel()
	var v int64
	if err := s.r.QueryRowContext(ctx, `SELECT value FROM version_counter WHERE id = 1`).Scan(&v); err != nil {
		return 0, sqliteErr("version", err)
	}
	return v, nil
}

// rowScanner is what *sql.Row and *sql.Rows share.
type rowScanner interface {
	Scan(dest ...any) error
}

func scanSQLiteKey(row rowScanner) (keys.Record, error) {
	var (
		r                           keys.Record
		hash                        []byte
		env, scopes                 string
		created                     int64
		expires, revoked, used, rol sql.NullInt64
		replaced                    sql.NullString
	)
	err := row.Scan(&r.ID, &hash, &r.Prefix, &r.Last4, &r.Tenant, &r.Name, &env, &scopes, &r.Plan, &r.Lineage,
		&created, &expires, &revoked, &used, &rol, &replaced, &r.Imported, &r.Version)
	if err != nil {
		return keys.Record{}, err
	}
	if len(hash) != len(r.Hash) {
		return keys.Record{}, fmt.Errorf("key %s: stored hash has %d bytes", r.ID, len(hash))
	}
	copy(r.Hash[:], hash)
	r.Env = keys.Env(env)
	if r.Scopes, err = decodeScopes(scopes); err != nil {
		return keys.Record{}, fmt.Errorf("key %s: scopes: %w", r.ID, err)
	}
	r.CreatedAt = time.UnixMicro(created).UTC()
	r.ExpiresAt = fromMicros(expires)
	r.RevokedAt = fromMicros(revoked)
	r.LastUsedAt = fromMicros(used)
	r.RolledAt = fromMicros(rol)
	r.ReplacedBy = replaced.String
	return r, nil
}

func scanSQLiteGrant(row rowScanner) (keys.Grant, error) {
	var (
		g                keys.Grant
		scopes           string
		created, updated int64
		revoked          sql.NullInt64
	)
	if err := row.Scan(&g.Tenant, &g.Org, &scopes, &created, &updated, &revoked, &g.Version); err != nil {
		return keys.Grant{}, err
	}
	var err error
	if g.Scopes, err = decodeScopes(scopes); err != nil {
		return keys.Grant{}, fmt.Errorf("grant %s/%s: scopes: %w", g.Tenant, g.Org, err)
	}
	g.CreatedAt = time.UnixMicro(created).UTC()
	g.UpdatedAt = time.UnixMicro(updated).UTC()
	g.RevokedAt = fromMicros(revoked)
	return g, nil
}

func decodeScopes(s string) ([]string, error) {
	out := []string{}
	if s == "" || s == "[]" {
		return out, nil
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	return scopesOrEmpty(out), nil
}

// micros is a time as stored by SQLite: microseconds since the epoch, or
// NULL for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return dbTime(t).UnixMicro()
}

func fromMicros(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.UnixMicro(n.Int64).UTC()
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// sqliteErr wraps err with op, mapping "no rows" to ErrNotFound and
// uniqueness violations to ErrConflict.
func sqliteErr(op string, err error) error {
	var se *sqlite.Error
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	case errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY):
		return fmt.Errorf("store: %s: %w: %w", op, ErrConflict, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
