package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	keyDB
	path  string
	w     *sql.DB
	r     *sql.DB
	stmts *stmtCache // the readers' statements, prepared once
}

var (
	_ DB           = (*SQLite)(nil)
	_ BulkInserter = (*SQLite)(nil)
	_ dialect      = (*SQLite)(nil)
)

// sqliteSQL is SQLite's side of dialectSQL. BEGIN IMMEDIATE has locked
// out every other writer already, so lockKey is a plain read.
var sqliteSQL = dialectSQL{
	nextVersions:      `UPDATE version_counter SET value = value + $1 WHERE id = 1 RETURNING value`,
	version:           `SELECT value FROM version_counter WHERE id = 1`,
	lockKey:           stmtKeyByID,
	undispatched:      selectUndispatched,
	dueDeliveries:     selectDue,
	oldestUndelivered: `SELECT COALESCE(min(at), 0) FROM (` + undeliveredAt + `)`,
}

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
		return nil, errors.New("sqlite: empty path; use sqlite:PATH, e.g. sqlite:keygate.db")
	case path == ":memory:" || strings.HasPrefix(path, "file:"):
		return nil, fmt.Errorf("sqlite: %q is not supported; give a file path, e.g. sqlite:keygate.db", path)
	case strings.ContainsRune(path, '?'):
		return nil, fmt.Errorf("sqlite: path %q: '?' and query parameters are not supported", path)
	}
	dir := filepath.Dir(path)
	switch st, err := os.Stat(dir); {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("sqlite: directory %s of database %s does not exist", dir, path)
	case err != nil:
		return nil, fmt.Errorf("sqlite: directory %s of database %s: %w", dir, path, err)
	case !st.IsDir():
		return nil, fmt.Errorf("sqlite: %s (directory of database %s) is not a directory", dir, path)
	}

	busy := strconv.FormatInt(opts.QueryTimeout.Milliseconds(), 10)
	w, err := sql.Open("sqlite", path+"?_txlock=immediate&_journal_mode=WAL&_pragma=cache_size("+sqliteCacheSize+")&_busy_timeout="+busy)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	// The writer connects first: it switches the file to WAL, which the
	// query-only readers could not.
	if err := pingTimeout(ctx, w, opts.ConnectTimeout); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, explainOpen(path, err))
	}
	r, err := sql.Open("sqlite", path+"?_query_only=1&_busy_timeout="+busy)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(opts.MaxConns)
	r.SetMaxIdleConns(opts.MaxConns)
	if err := pingTimeout(ctx, r, opts.ConnectTimeout); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s := &SQLite{path: path, w: w, r: r, stmts: &stmtCache{db: r}}
	s.keyDB = keyDB{name: "sqlite", d: s, sql: sqliteSQL, reads: sqliteQueries{q: r, stmts: s.stmts}, opts: opts}
	return s, nil
}

// explainOpen says why SQLite could not open path when the operating
// system knows better than SQLite's "unable to open database file (14)":
// the file or its directory is not writable by this user, or lives on a
// read-only file system.
func explainOpen(path string, err error) error {
	f, ferr := os.OpenFile(path, os.O_RDWR, 0)
	if ferr == nil {
		f.Close()
		return err
	}
	if !errors.Is(ferr, os.ErrNotExist) {
		return ferr
	}
	// Whether a file can be made there: a probe of our own, not the
	// database's name, which another process may be creating right now.
	dir := filepath.Dir(path)
	probe, perr := os.CreateTemp(dir, ".keygate-probe-*")
	if perr != nil {
		var pe *os.PathError
		if errors.As(perr, &pe) {
			perr = pe.Err
		}
		return fmt.Errorf("cannot create %s: directory %s: %w", path, dir, perr)
	}
	probe.Close()
	os.Remove(probe.Name())
	return err
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
	return errors.Join(s.stmts.close(), s.r.Close(), s.w.Close())
}

// Ping implements DB.
func (s *SQLite) Ping(ctx context.Context) error {
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	_, err := s.reads.scalar(ctx, "SELECT 1")
	return s.failed(err)
}

// Migrate implements DB. BEGIN IMMEDIATE makes concurrent migrations from
// several processes take turns; each sees what the previous one applied.
func (s *SQLite) Migrate(ctx context.Context) error {
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at INTEGER NOT NULL
)`); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT version FROM schema_migrations`)
		applied, err := collect(rows, err, scanInt)
		if err != nil {
			return err
		}
		return applyMigrations(ctx, s.opts.Logger, "sqlite", applied, func(m migration) error {
			if _, err := tx.ExecContext(ctx, m.sqlite); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.version, m.name, time.Now().UnixMicro())
			return err
		})
	})
	return s.failed(err)
}

// inTx runs fn in a transaction on db, committing when it returns nil. On
// the writer every transaction is BEGIN IMMEDIATE (the _txlock parameter).
func inTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// snapshot implements dialect: a read transaction on a reader, which in
// WAL mode sees one snapshot from its first read to its end.
func (s *SQLite) snapshot(ctx context.Context, fn func(queries) error) error {
	return inTx(ctx, s.r, func(tx *sql.Tx) error { return fn(sqliteQueries{q: tx}) })
}

// versioned implements dialect with a BEGIN IMMEDIATE transaction on the
// one writer connection. There is no one to notify.
func (s *SQLite) versioned(ctx context.Context, fn func(queries) (int64, error)) error {
	return inTx(ctx, s.w, func(tx *sql.Tx) error {
		_, err := fn(sqliteQueries{q: tx})
		return err
	})
}

// tx implements dialect on the one writer connection.
func (s *SQLite) tx(ctx context.Context, fn func(queries) error) error {
	return inTx(ctx, s.w, func(tx *sql.Tx) error { return fn(sqliteQueries{q: tx}) })
}

// duplicate implements dialect.
func (s *SQLite) duplicate(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

// TouchLastUsed implements DB. It does not bump versions.
func (s *SQLite) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ctx, cancel := s.timeout(ctx)
	defer cancel()
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)`)
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
	return s.failed(err)
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
		return s.failed(err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `PRAGMA cache_size = -131072`); err != nil {
		return s.failed(err)
	}
	defer c.ExecContext(context.WithoutCancel(ctx), `PRAGMA cache_size = `+sqliteCacheSize)
	for start := 0; start < len(rs); start += batch {
		tx, err := c.BeginTx(ctx, nil)
		if err != nil {
			return s.failed(err)
		}
		if err := s.bulk(ctx, tx, rs[start:min(start+batch, len(rs))]); err != nil {
			tx.Rollback()
			return s.failed(err)
		}
		if err := tx.Commit(); err != nil {
			return s.failed(err)
		}
	}
	return nil
}

func (s *SQLite) bulk(ctx context.Context, tx *sql.Tx, rs []keys.Record) error {
	last, err := sqliteQueries{q: tx}.scalar(ctx, sqliteSQL.nextVersions, len(rs))
	if err != nil {
		return err
	}
	st, err := tx.PrepareContext(ctx, stmtInsertKey)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := range rs {
		r, err := prepareKey(rs[i])
		if err != nil {
			return err
		}
		r.Version = last - int64(len(rs)-1-i)
		if _, err := st.ExecContext(ctx, keyArgs(sqliteCodec{}, &r)...); err != nil {
			return s.named(err, "key "+r.ID+" or its hash")
		}
	}
	return nil
}
