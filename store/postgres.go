package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/keys"
)

// Postgres is the key database for several replicas: one PostgreSQL
// database shared by all of them, through a pgx pool.
//
// # Version ordering
//
// Versions come from the sequence change_version. A sequence hands out
// numbers before commit, so on its own it would let transaction A take
// version 10, transaction B take 11 and commit first, and a poller read 11
// and move its cursor past 10 before A commits: A's change would never be
// seen. To rule that out every versioned write transaction first takes a
// transaction-level advisory lock (pg_advisory_xact_lock, one lock per
// schema) and only then draws versions, writes and notifies. PostgreSQL
// releases transaction locks only after the commit is visible to new
// snapshots, so the next writer draws its versions after the previous
// writer's rows are visible: versions become visible in increasing order,
// and a reader that has seen version v has seen everything below v (Changes
// reads both tables from one snapshot). The price is that versioned writes
// are serialised, which is fine for key administration (a few writes a
// second at most). TouchLastUsed, the only frequent write, bumps no version
// and takes no lock. Sequence numbers drawn by a transaction that then rolls
// back leave gaps, which the feed tolerates.
//
// Every versioned write also runs pg_notify(NotifyChannel, version) before
// commit; Listen turns those notices into calls of changed.
type Postgres struct {
	keyDB
	pool *pgxpool.Pool
}

var (
	_ DB           = (*Postgres)(nil)
	_ BulkInserter = (*Postgres)(nil)
	_ Notifier     = (*Postgres)(nil)
	_ dialect      = (*Postgres)(nil)
)

// SQL that derives the advisory lock ids from the schema in use, so that
// keygate installations in different schemas of one database (and the
// tests) do not wait on one another.
const (
	pgLockVersions = `SELECT pg_advisory_xact_lock(hashtextextended('keygate.change_version.' || coalesce(current_schema(), ''), 0))`
	pgLockMigrate  = `SELECT pg_advisory_xact_lock(hashtextextended('keygate.migrate.' || coalesce(current_schema(), ''), 0))`
)

// pgSQL is PostgreSQL's side of dialectSQL. Version reads the highest
// version of any committed row, not the sequence's position, which may
// belong to a transaction still in flight.
var pgSQL = dialectSQL{
	nextVersions: `SELECT setval('change_version', nextval('change_version') + $1 - 1)`,
	version: `SELECT GREATEST(
	COALESCE((SELECT max(version) FROM keys), 0),
	COALESCE((SELECT max(version) FROM grants), 0))`,
	lockKey:       stmtKeyByID + ` FOR UPDATE`,
	undispatched:  selectUndispatched + ` FOR UPDATE SKIP LOCKED`,
	dueDeliveries: selectDue + ` FOR UPDATE OF d SKIP LOCKED`,
	oldestUndelivered: `SELECT COALESCE((extract(epoch FROM min(at)) * 1000000)::bigint, 0) FROM (
` + undeliveredAt + `) u`,
}

// OpenPostgres connects to the PostgreSQL database at url (a pgx connection
// string) and pings it, failing if it does not answer within
// opts.ConnectTimeout. It does not touch the schema.
func OpenPostgres(ctx context.Context, url string, opts Options) (*Postgres, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	cfg.MaxConns = int32(min(opts.MaxConns, 1<<20))
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.ConnConfig.DialFunc = dialer(opts.ConnectTimeout).DialContext
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, connectError(cfg.ConnConfig, opts.ConnectTimeout, err)
	}
	p := &Postgres{pool: pool}
	p.keyDB = keyDB{name: "postgres", d: p, sql: pgSQL, reads: pgQueries{q: pool}, opts: opts}
	return p, nil
}

// connectError says why a first connection failed: the server answered
// and refused (no such database, bad credentials) or never answered.
func connectError(c *pgx.ConnConfig, timeout time.Duration, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "3D000": // invalid_catalog_name
			return fmt.Errorf("postgres: database %q does not exist on %s; create it (createdb %s) or fix database.url", c.Database, where(c), c.Database)
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return fmt.Errorf("postgres: %s refused user %q: %s", where(c), c.User, pe.Message)
		}
		return fmt.Errorf("postgres: %s refused the connection: %w", where(c), err)
	}
	return fmt.Errorf("postgres: cannot reach %s within %s: %w", where(c), timeout, err)
}

// dialer notices a silently dead peer within about 25 s (TCP keepalive),
// rather than the operating system's default of minutes.
func dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: timeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     10 * time.Second,
			Interval: 5 * time.Second,
			Count:    3,
		},
	}
}

// where names a server for error messages, without credentials.
func where(c *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// Pool returns the connection pool, for tests and tools.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Close implements DB.
func (p *Postgres) Close() error {
	p.pool.Close()
	return nil
}

// Ping implements DB.
func (p *Postgres) Ping(ctx context.Context) error {
	ctx, cancel := p.timeout(ctx)
	defer cancel()
	return p.failed(p.pool.Ping(ctx))
}

// Migrate implements DB. A transaction-level advisory lock makes replicas
// that start together migrate one after the other; DDL is transactional in
// PostgreSQL, so a failed migration leaves nothing behind.
func (p *Postgres) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgLockMigrate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT version FROM schema_migrations`) // CollectRows reports its error
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int])
		if err != nil {
			return err
		}
		return applyMigrations(ctx, p.opts.Logger, "postgres", applied, func(m migration) error {
			if _, err := tx.Exec(ctx, m.postgres, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
	})
	return p.failed(err)
}

// snapshot implements dialect with a REPEATABLE READ read-only
// transaction: one snapshot for all its statements.
func (p *Postgres) snapshot(ctx context.Context, fn func(queries) error) error {
	return pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return fn(pgQueries{q: tx})
	})
}

// versioned implements dialect; see versionedTx.
func (p *Postgres) versioned(ctx context.Context, fn func(queries) (int64, error)) error {
	return p.versionedTx(ctx, func(tx pgx.Tx) (int64, error) { return fn(pgQueries{q: tx}) })
}

// versionedTx runs fn in a transaction under the version lock (see
// Postgres) and, when fn drew versions, notifies the last one before
// commit.
func (p *Postgres) versionedTx(ctx context.Context, fn func(tx pgx.Tx) (last int64, err error)) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgLockVersions); err != nil {
			return fmt.Errorf("version lock: %w", err)
		}
		last, err := fn(tx)
		if err != nil || last == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, strconv.FormatInt(last, 10)); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		return nil
	})
}

// tx implements dialect.
func (p *Postgres) tx(ctx context.Context, fn func(queries) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return fn(pgQueries{q: tx}) })
}

// duplicate implements dialect.
func (p *Postgres) duplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}

// TouchLastUsed implements DB: one statement for the whole batch, outside
// the version lock, bumping no version.
func (p *Postgres) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]string, 0, len(used))
	ts := make([]time.Time, 0, len(used))
	for id, t := range used {
		if t.IsZero() {
			continue
		}
		ids = append(ids, id)
		ts = append(ts, dbTime(t))
	}
	ctx, cancel := p.timeout(ctx)
	defer cancel()
	_, err := p.pool.Exec(ctx, `UPDATE keys AS k SET last_used_at = u.t
FROM unnest($1::text[], $2::timestamptz[]) AS u(id, t)
WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.t)`, ids, ts)
	return p.failed(err)
}

// BulkInsertKeys implements BulkInserter with one COPY in one versioned
// transaction.
func (p *Postgres) BulkInsertKeys(ctx context.Context, rs []keys.Record) error {
	if len(rs) == 0 {
		return nil
	}
	err := p.versionedTx(ctx, func(tx pgx.Tx) (int64, error) {
		last, err := pgQueries{q: tx}.scalar(ctx, pgSQL.nextVersions, len(rs))
		if err != nil {
			return 0, err
		}
		first := last - int64(len(rs)) + 1
		_, err = tx.CopyFrom(ctx, pgx.Identifier{"keys"}, keyColumnNames, pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
			r, err := prepareKey(rs[i])
			if err != nil {
				return nil, err
			}
			r.Version = first + int64(i)
			return keyArgs(pgCodec{}, &r), nil
		}))
		return last, err
	})
	return p.failed(p.named(err, "a key with one of these ids or hashes"))
}
