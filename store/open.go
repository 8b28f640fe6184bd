package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
)

// Options tunes a database connection. Every zero value means a default.
type Options struct {
	// MaxConns bounds the connection pool (PostgreSQL) or the number of
	// concurrent readers (SQLite, which always has exactly one writer).
	// Zero: 8.
	MaxConns int
	// QueryTimeout bounds every single query or write transaction made
	// by a DB method. Migrate and BulkInsertKeys are bounded only by their
	// context. Zero: 5s.
	QueryTimeout time.Duration
	// ConnectTimeout bounds establishing a connection, including Open's
	// ping. Zero: 5s.
	ConnectTimeout time.Duration
	// Logger receives migration and reconnection messages. Nil: discard.
	Logger *slog.Logger
	// MustExist refuses to create a SQLite file that is not there: only
	// the commands that own the database (serve, migrate) create one, so
	// that a command run from the wrong folder does not start a new,
	// empty key database beside the real one.
	MustExist bool
}

// ErrNoDatabase: Options.MustExist was set and the SQLite file is missing.
var ErrNoDatabase = errors.New("no key database")

// Defaults for Options' zero values.
const (
	DefaultMaxConns       = 8
	DefaultQueryTimeout   = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second
)

// withDefaults validates o and fills in its zero values.
func (o Options) withDefaults() (Options, error) {
	switch {
	case o.MaxConns < 0:
		return o, fmt.Errorf("store: MaxConns must not be negative, got %d", o.MaxConns)
	case o.QueryTimeout < 0:
		return o, fmt.Errorf("store: QueryTimeout must not be negative, got %s", o.QueryTimeout)
	case o.ConnectTimeout < 0:
		return o, fmt.Errorf("store: ConnectTimeout must not be negative, got %s", o.ConnectTimeout)
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.QueryTimeout == 0 {
		o.QueryTimeout = DefaultQueryTimeout
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// BulkInserter is implemented by databases that can load many keys at
// once, far faster than InsertKey in a loop: for seeding large test and
// benchmark databases. Records are stored as given (Version is assigned);
// a duplicate hash or ID fails with ErrConflict. Not atomic as a whole:
// on error some records may have been stored.
type BulkInserter interface {
	BulkInsertKeys(ctx context.Context, rs []keys.Record) error
}

// Open connects to the key database named by url without touching its
// schema (Migrate does that):
//
//	sqlite:PATH, sqlite://PATH          SQLite file (created if missing; its directory must exist)
//	postgres://..., postgresql://...    PostgreSQL (pgx connection string)
//
// A PostgreSQL server must answer within opts.ConnectTimeout.
func Open(ctx context.Context, url string, opts Options) (DB, error) {
	switch {
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if opts.MustExist {
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				abs, _ := filepath.Abs(path)
				return nil, fmt.Errorf("%w at %s; run 'keygate migrate' to create it there, or point database.url (KEYGATE_DATABASE_URL, --config) at the server's database", ErrNoDatabase, abs)
			}
		}
		return OpenSQLite(ctx, path, opts)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		return OpenPostgres(ctx, url, opts)
	case url == "":
		return nil, errors.New("store: database URL is empty; use sqlite:PATH or postgres://HOST/DB")
	}
	scheme, _, ok := strings.Cut(url, ":")
	if !ok {
		scheme = url
	}
	if len(scheme) > 20 {
		scheme = scheme[:20] + "..."
	}
	return nil, fmt.Errorf("store: unsupported database URL scheme %q: accepted are sqlite:PATH, sqlite://PATH, postgres:// and postgresql://", scheme)
}
