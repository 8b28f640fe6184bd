package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keygate/keygate/keys"
)

// sqlQuerier is what *sql.DB and *sql.Tx share.
type sqlQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// rowScanner is what *sql.Row, *sql.Rows and pgx.Row share.
type rowScanner interface {
	Scan(dest ...any) error
}

// sqliteQueries implements queries on the readers, through statements
// prepared once (stmts), or in a transaction (stmts nil).
type sqliteQueries struct {
	sqliteCodec
	q     sqlQuerier
	stmts *stmtCache
}

var _ queries = sqliteQueries{}

// row runs a query for one row; a failure to prepare it is reported by
// Scan, as a failure to run it is.
func (s sqliteQueries) row(ctx context.Context, query string, args []any) rowScanner {
	if s.stmts == nil {
		return s.q.QueryRowContext(ctx, query, args...)
	}
	st, err := s.stmts.get(ctx, query)
	if err != nil {
		return errRow{err}
	}
	return st.QueryRowContext(ctx, args...)
}

// errRow is a row whose query could not run.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

func (s sqliteQueries) rows(ctx context.Context, query string, args []any) (*sql.Rows, error) {
	if s.stmts == nil {
		return s.q.QueryContext(ctx, query, args...)
	}
	st, err := s.stmts.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (s sqliteQueries) key(ctx context.Context, query string, args ...any) (keys.Record, error) {
	return scanSQLiteKey(s.row(ctx, query, args))
}

func (s sqliteQueries) keys(ctx context.Context, query string, args ...any) ([]keys.Record, error) {
	rows, err := s.rows(ctx, query, args)
	return collect(rows, err, scanSQLiteKey)
}

func (s sqliteQueries) grant(ctx context.Context, query string, args ...any) (keys.Grant, error) {
	return scanSQLiteGrant(s.row(ctx, query, args))
}

func (s sqliteQueries) grants(ctx context.Context, query string, args ...any) ([]keys.Grant, error) {
	rows, err := s.rows(ctx, query, args)
	return collect(rows, err, scanSQLiteGrant)
}

func (s sqliteQueries) events(ctx context.Context, query string, args ...any) ([]AuditEvent, error) {
	rows, err := s.rows(ctx, query, args)
	return collect(rows, err, scanSQLiteEvent)
}

func (s sqliteQueries) affected(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := s.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqliteQueries) scalar(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := s.row(ctx, query, args).Scan(&n)
	return n, err
}

func (s sqliteQueries) exec(ctx context.Context, query string, args ...any) error {
	_, err := s.q.ExecContext(ctx, query, args...)
	return err
}

// collect reads every row of rows (the result of a query that failed with
// err, if it did) with scan and closes rows: pgx.CollectRows for
// database/sql. The slice is never nil.
func collect[T any](rows *sql.Rows, err error, scan func(rowScanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func scanInt(row rowScanner) (int, error) {
	var n int
	err := row.Scan(&n)
	return n, err
}

// stmtCache prepares each statement on first use and keeps it: not at
// Open, because before Migrate the tables may not exist. Lookups (the
// cache's misses, on the Check path) take no lock.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex // serialises preparing
	m  sync.Map   // query string → *sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.m.Store(query, st)
	return st, nil
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	c.m.Range(func(_, st any) bool {
		errs = append(errs, st.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(errs...)
}

// sqliteCodec implements codec: times as INTEGER microseconds since the
// Unix epoch (UTC), scopes as a JSON array.
type sqliteCodec struct{}

func (sqliteCodec) time(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return dbTime(t).UnixMicro()
}

func (sqliteCodec) scopes(s []string) any {
	b, _ := json.Marshal(scopesOrEmpty(s)) // a []string always encodes
	return string(b)
}

func scanSQLiteKey(row rowScanner) (keys.Record, error) {
	var r keys.Record
	err := row.Scan(&r.ID, blobHash{&r.Hash}, &r.Prefix, &r.Last4, &r.Tenant, &r.Name, (*string)(&r.Env), jsonScopes{&r.Scopes},
		&r.Plan, &r.Lineage, micros{&r.CreatedAt}, micros{&r.ExpiresAt}, micros{&r.RevokedAt}, micros{&r.LastUsedAt},
		micros{&r.RolledAt}, nullText{&r.ReplacedBy}, &r.Imported, &r.Version, jsonCIDRs{&r.AllowedCIDRs}, jsonMetadata{&r.Metadata})
	if err != nil {
		return keys.Record{}, err
	}
	return r, nil
}

func scanSQLiteGrant(row rowScanner) (keys.Grant, error) {
	var g keys.Grant
	err := row.Scan(&g.Tenant, &g.Org, jsonScopes{&g.Scopes}, micros{&g.CreatedAt}, micros{&g.UpdatedAt},
		micros{&g.RevokedAt}, &g.Version)
	if err != nil {
		return keys.Grant{}, err
	}
	return g, nil
}

func scanSQLiteEvent(row rowScanner) (AuditEvent, error) {
	var e AuditEvent
	var details string
	err := row.Scan(&e.ID, micros{&e.At}, &e.Action, &e.Tenant, nullText{&e.KeyID}, &e.Actor.Type, &e.Actor.Name,
		nullText{&e.SourceIP}, nullText{&e.RequestID}, &details)
	if err != nil {
		return AuditEvent{}, err
	}
	e.Details, err = decodeDetails([]byte(details))
	return e, err
}

// micros scans a time stored as INTEGER microseconds (NULL: the zero
// time), in UTC.
type micros struct{ t *time.Time }

// Scan implements sql.Scanner.
func (d micros) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*d.t = time.Time{}
	case int64:
		*d.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("time stored as %T, want INTEGER microseconds", src)
	}
	return nil
}

// jsonScopes scans scopes stored as a JSON array, never nil.
type jsonScopes struct{ s *[]string }

// Scan implements sql.Scanner.
func (d jsonScopes) Scan(src any) error {
	var b []byte
	switch v := src.(type) {
	case string:
		b = []byte(v)
	case []byte:
		b = v
	default:
		return fmt.Errorf("scopes stored as %T, want a JSON array", src)
	}
	out := []string{}
	if len(b) > 0 && string(b) != "[]" {
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("scopes: %w", err)
		}
	}
	*d.s = scopesOrEmpty(out)
	return nil
}

// blobHash scans a 32-byte BLOB into a keys.Hash.
type blobHash struct{ h *keys.Hash }

// Scan implements sql.Scanner.
func (d blobHash) Scan(src any) error {
	b, ok := src.([]byte)
	if !ok || len(b) != len(d.h) {
		return fmt.Errorf("stored hash is %T of %d bytes, want %d bytes", src, len(b), len(d.h))
	}
	copy(d.h[:], b)
	return nil
}

// nullText scans TEXT or NULL (the empty string).
type nullText struct{ s *string }

// Scan implements sql.Scanner.
func (d nullText) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*d.s = ""
	case string:
		*d.s = v
	case []byte:
		*d.s = string(v)
	default:
		return fmt.Errorf("text stored as %T", src)
	}
	return nil
}
