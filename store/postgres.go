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
	"github.com/jackc/pgx/v5/pgtype"
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
	pool *pgxpool.Pool
	opts Options
}

var (
	_ DB           = (*Postgres)(nil)
	_ BulkInserter = (*Postgres)(nil)
	_ Notifier     = (*Postgres)(nil)
)

// SQL that derives the advisory lock ids from the schema in use, so that
// keygate installations in different schemas of one database (and the
// tests) do not wait on one another.
const (
	pgLockVersions = `SELECT pg_advisory_xact_lock(hashtextextended('keygate.change_version.' || coalesce(current_schema(), ''), 0))`
	pgLockMigrate  = `SELECT pg_advisory_xact_lock(hashtextextended('keygate.migrate.' || coalesce(current_schema(), ''), 0))`
)

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
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	cfg.MaxConns = int32(min(opts.MaxConns, 1<<20))
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	cfg.ConnConfig.DialFunc = dialer(opts.ConnectTimeout).DialContext
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: postgres: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: postgres: cannot reach %s within %s: %w", where(cfg.ConnConfig), opts.ConnectTimeout, err)
	}
	return &Postgres{pool: pool, opts: opts}, nil
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
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: postgres: ping: %w", err)
	}
	return nil
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
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return err
		}
		vs, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return err
		}
		applied := map[int]bool{}
		for _, v := range vs {
			applied[int(v)] = true
		}
		for _, m := range migrations() {
			if applied[m.version] {
				continue
			}
			if _, err := tx.Exec(ctx, m.postgres, pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
			p.opts.Logger.InfoContext(ctx, "applied schema migration", "database", "postgres", "version", m.version, "name", m.name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: postgres: migrate: %w", err)
	}
	return nil
}

// pgQuerier is what *pgxpool.Pool and pgx.Tx share.
type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// KeyByHash implements DB.
func (p *Postgres) KeyByHash(ctx context.Context, h keys.Hash) (keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	r, err := scanPGKey(p.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys WHERE hash = $1`, h[:]))
	if err != nil {
		return keys.Record{}, pgErr("key by hash", err)
	}
	return r, nil
}

// KeyByID implements DB.
func (p *Postgres) KeyByID(ctx context.Context, id string) (keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	r, err := pgKeyByID(ctx, p.pool, id, false)
	if err != nil {
		return keys.Record{}, pgErr("key "+id, err)
	}
	return r, nil
}

func pgKeyByID(ctx context.Context, q pgQuerier, id string, forUpdate bool) (keys.Record, error) {
	query := `SELECT ` + keyColumns + ` FROM keys WHERE id = $1`
	if forUpdate {
		query += ` FOR UPDATE`
	}
	return scanPGKey(q.QueryRow(ctx, query, id))
}

// ListKeys implements DB.
func (p *Postgres) ListKeys(ctx context.Context, f ListFilter) ([]keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	q := `SELECT ` + keyColumns + ` FROM keys WHERE id > $1`
	args := []any{f.After}
	if f.Tenant != "" {
		args = append(args, f.Tenant)
		q += ` AND tenant = $` + strconv.Itoa(len(args))
	}
	if !f.IncludeRevoked {
		q += ` AND revoked_at IS NULL`
	}
	q += ` ORDER BY id`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += ` LIMIT $` + strconv.Itoa(len(args))
	}
	rs, err := queryPGKeys(ctx, p.pool, q, args...)
	if err != nil {
		return nil, pgErr("list keys", err)
	}
	return rs, nil
}

// ActiveKeys implements DB.
func (p *Postgres) ActiveKeys(ctx context.Context, now time.Time, afterID string, limit int) ([]keys.Record, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	rs, err := queryPGKeys(ctx, p.pool, `SELECT `+keyColumns+` FROM keys
WHERE id > $1 AND (revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2)
ORDER BY id LIMIT $3`, afterID, dbTime(now), pgLimit(limit))
	if err != nil {
		return nil, pgErr("active keys", err)
	}
	return rs, nil
}

// pgLimit maps "no limit" (<= 0) to LIMIT NULL.
func pgLimit(n int) *int {
	if n <= 0 {
		return nil
	}
	return &n
}

func queryPGKeys(ctx context.Context, q pgQuerier, query string, args ...any) ([]keys.Record, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	rs := []keys.Record{}
	for rows.Next() {
		r, err := scanPGKey(rows)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	return rs, rows.Err()
}

// pgWrite is a versioned write transaction: it holds the version lock and
// remembers the highest version drawn, to notify it at the end.
type pgWrite struct {
	tx   pgx.Tx
	last int64
}

// versions draws n consecutive versions and returns the first.
func (w *pgWrite) versions(ctx context.Context, n int) (int64, error) {
	var last int64
	var err error
	if n == 1 {
		err = w.tx.QueryRow(ctx, `SELECT nextval('change_version')`).Scan(&last)
	} else {
		err = w.tx.QueryRow(ctx, `SELECT setval('change_version', nextval('change_version') + $1 - 1)`, n).Scan(&last)
	}
	if err != nil {
		return 0, fmt.Errorf("next version: %w", err)
	}
	w.last = last
	return last - int64(n) + 1, nil
}

// write runs fn in a versioned write transaction bounded by QueryTimeout.
func (p *Postgres) write(ctx context.Context, fn func(ctx context.Context, w *pgWrite) error) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	return p.writeTx(ctx, fn)
}

// writeTx runs fn in a versioned write transaction: under the version lock
// (see Postgres), notifying the last version drawn before commit.
func (p *Postgres) writeTx(ctx context.Context, fn func(ctx context.Context, w *pgWrite) error) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, pgLockVersions); err != nil {
			return fmt.Errorf("version lock: %w", err)
		}
		w := &pgWrite{tx: tx}
		if err := fn(ctx, w); err != nil {
			return err
		}
		if w.last == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, strconv.FormatInt(w.last, 10)); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		return nil
	})
}

const pgInsertKey = `INSERT INTO keys (` + keyColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)`

func pgKeyArgs(r *keys.Record) []any {
	return []any{r.ID, r.Hash[:], r.Prefix, r.Last4, r.Tenant, r.Name, string(r.Env), scopesOrEmpty(r.Scopes), r.Plan, r.Lineage,
		r.CreatedAt, pgTime(r.ExpiresAt), pgTime(r.RevokedAt), pgTime(r.LastUsedAt), pgTime(r.RolledAt),
		nullString(r.ReplacedBy), r.Imported, r.Version}
}

// InsertKey implements DB.
func (p *Postgres) InsertKey(ctx context.Context, r keys.Record) (keys.Record, error) {
	r, err := prepareKey(r)
	if err != nil {
		return keys.Record{}, err
	}
	err = p.write(ctx, func(ctx context.Context, w *pgWrite) error {
		return pgInsert(ctx, w, &r)
	})
	if err != nil {
		return keys.Record{}, pgErr("insert key "+r.ID, err)
	}
	return r, nil
}

func pgInsert(ctx context.Context, w *pgWrite, r *keys.Record) error {
	v, err := w.versions(ctx, 1)
	if err != nil {
		return err
	}
	r.Version = v
	_, err = w.tx.Exec(ctx, pgInsertKey, pgKeyArgs(r)...)
	return err
}

// pgUpdate writes r's mutable fields with a new version.
func pgUpdate(ctx context.Context, w *pgWrite, r *keys.Record) error {
	v, err := w.versions(ctx, 1)
	if err != nil {
		return err
	}
	r.Version = v
	_, err = w.tx.Exec(ctx, `UPDATE keys SET expires_at = $1, revoked_at = $2, rolled_at = $3, replaced_by = $4, version = $5 WHERE id = $6`,
		pgTime(r.ExpiresAt), pgTime(r.RevokedAt), pgTime(r.RolledAt), nullString(r.ReplacedBy), r.Version, r.ID)
	return err
}

// updateKey loads key id in a write transaction, lets change edit it (or
// refuse with an error, returned with the unchanged record), and stores
// the edited record with a new version.
func (p *Postgres) updateKey(ctx context.Context, op, id string, change func(r *keys.Record) error) (keys.Record, error) {
	var out keys.Record
	err := p.write(ctx, func(ctx context.Context, w *pgWrite) error {
		r, err := pgKeyByID(ctx, w.tx, id, true)
		if err != nil {
			return err
		}
		out = r
		if err := change(&r); err != nil {
			return err
		}
		if err := pgUpdate(ctx, w, &r); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return out, pgErr(op+" "+id, err)
	}
	return out, nil
}

// RevokeKey implements DB.
func (p *Postgres) RevokeKey(ctx context.Context, id string, at time.Time) (keys.Record, error) {
	return p.updateKey(ctx, "revoke key", id, func(r *keys.Record) error { return revoke(r, at) })
}

// SetExpiry implements DB. A revoked key is left alone (ErrRevoked).
func (p *Postgres) SetExpiry(ctx context.Context, id string, at time.Time) (keys.Record, error) {
	return p.updateKey(ctx, "set expiry of key", id, func(r *keys.Record) error { return setExpiry(r, at) })
}

// RollKey implements DB. ErrNotFound for an unknown oldID, ErrRevoked for
// a revoked one, ErrRolled for one already rolled, ErrConflict when next's
// hash or ID exists; in every case nothing is written.
func (p *Postgres) RollKey(ctx context.Context, oldID string, next keys.Record, now, oldExpires time.Time) (old, created keys.Record, err error) {
	err = p.write(ctx, func(ctx context.Context, w *pgWrite) error {
		o, err := pgKeyByID(ctx, w.tx, oldID, true)
		if err != nil {
			return err
		}
		old = o
		n, err := prepareRoll(o, next)
		if err != nil {
			return err
		}
		if err := pgInsert(ctx, w, &n); err != nil {
			return err
		}
		o = rollOld(o, n.ID, now, oldExpires)
		if err := pgUpdate(ctx, w, &o); err != nil {
			return err
		}
		old, created = o, n
		return nil
	})
	if err != nil {
		return old, keys.Record{}, pgErr("roll key "+oldID, err)
	}
	return old, created, nil
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
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	_, err := p.pool.Exec(ctx, `UPDATE keys AS k SET last_used_at = u.t
FROM unnest($1::text[], $2::timestamptz[]) AS u(id, t)
WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.t)`, ids, ts)
	if err != nil {
		return pgErr("touch last used", err)
	}
	return nil
}

// BulkInsertKeys implements BulkInserter with one COPY in one transaction.
func (p *Postgres) BulkInsertKeys(ctx context.Context, rs []keys.Record) error {
	if len(rs) == 0 {
		return nil
	}
	err := p.writeTx(ctx, func(ctx context.Context, w *pgWrite) error {
		first, err := w.versions(ctx, len(rs))
		if err != nil {
			return err
		}
		cols := []string{"id", "hash", "prefix", "last4", "tenant", "name", "env", "scopes", "plan", "lineage",
			"created_at", "expires_at", "revoked_at", "last_used_at", "rolled_at", "replaced_by", "imported", "version"}
		_, err = w.tx.CopyFrom(ctx, pgx.Identifier{"keys"}, cols, pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
			r, err := prepareKey(rs[i])
			if err != nil {
				return nil, err
			}
			r.Version = first + int64(i)
			return pgKeyArgs(&r), nil
		}))
		return err
	})
	if err != nil {
		return pgErr("bulk insert keys", err)
	}
	return nil
}

// SetGrant implements DB.
func (p *Postgres) SetGrant(ctx context.Context, g keys.Grant) (keys.Grant, error) {
	g, err := prepareGrant(g)
	if err != nil {
		return keys.Grant{}, err
	}
	var out keys.Grant
	err = p.write(ctx, func(ctx context.Context, w *pgWrite) error {
		v, err := w.versions(ctx, 1)
		if err != nil {
			return err
		}
		out, err = scanPGGrant(w.tx.QueryRow(ctx, `INSERT INTO grants AS g (`+grantColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant, org) DO UPDATE SET
	scopes = excluded.scopes,
	created_at = CASE WHEN g.revoked_at IS NULL THEN g.created_at ELSE excluded.created_at END,
	updated_at = excluded.updated_at,
	revoked_at = excluded.revoked_at,
	version = excluded.version
RETURNING `+grantColumns,
			g.Tenant, g.Org, g.Scopes, g.CreatedAt, g.UpdatedAt, pgTime(g.RevokedAt), v))
		return err
	})
	if err != nil {
		return keys.Grant{}, pgErr("set grant", err)
	}
	return out, nil
}

// RevokeGrant implements DB.
func (p *Postgres) RevokeGrant(ctx context.Context, tenant, org string, at time.Time) (keys.Grant, error) {
	at = orNow(at)
	var out keys.Grant
	err := p.write(ctx, func(ctx context.Context, w *pgWrite) error {
		v, err := w.versions(ctx, 1)
		if err != nil {
			return err
		}
		out, err = scanPGGrant(w.tx.QueryRow(ctx, `UPDATE grants SET revoked_at = $1, updated_at = $1, version = $2
WHERE tenant = $3 AND org = $4 AND revoked_at IS NULL RETURNING `+grantColumns, at, v, tenant, org))
		return err
	})
	if err != nil {
		return keys.Grant{}, pgErr(fmt.Sprintf("revoke grant of tenant %s in org %s", tenant, org), err)
	}
	return out, nil
}

// ListGrants implements DB.
func (p *Postgres) ListGrants(ctx context.Context, tenant string) ([]keys.Grant, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	gs, err := queryPGGrants(ctx, p.pool, `SELECT `+grantColumns+` FROM grants
WHERE revoked_at IS NULL AND ($1 = '' OR tenant = $1) ORDER BY tenant, org`, tenant)
	if err != nil {
		return nil, pgErr("list grants", err)
	}
	return gs, nil
}

func queryPGGrants(ctx context.Context, q pgQuerier, query string, args ...any) ([]keys.Grant, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	gs := []keys.Grant{}
	for rows.Next() {
		g, err := scanPGGrant(rows)
		if err != nil {
			return nil, err
		}
		gs = append(gs, g)
	}
	return gs, rows.Err()
}

// Changes implements DB. Both queries run in one REPEATABLE READ
// transaction, so they see one snapshot; with the version lock (see
// Postgres) that snapshot holds every version up to the highest it holds.
func (p *Postgres) Changes(ctx context.Context, after int64, limit int) (Changes, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	var ch Changes
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		n := pgLimit(limit + 1)
		if limit <= 0 {
			n = nil
		}
		ks, err := queryPGKeys(ctx, tx, `SELECT `+keyColumns+` FROM keys WHERE version > $1 ORDER BY version LIMIT $2`, after, n)
		if err != nil {
			return err
		}
		gs, err := queryPGGrants(ctx, tx, `SELECT `+grantColumns+` FROM grants WHERE version > $1 ORDER BY version LIMIT $2`, after, n)
		if err != nil {
			return err
		}
		ch = mergeChanges(after, limit, ks, gs)
		return nil
	})
	if err != nil {
		return Changes{}, pgErr("changes", err)
	}
	return ch, nil
}

// Version implements DB: the highest version of any committed row, not the
// sequence's position, which may belong to a transaction still in flight.
func (p *Postgres) Version(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	defer cancel()
	var v int64
	err := p.pool.QueryRow(ctx, `SELECT GREATEST(
	COALESCE((SELECT max(version) FROM keys), 0),
	COALESCE((SELECT max(version) FROM grants), 0))`).Scan(&v)
	if err != nil {
		return 0, pgErr("version", err)
	}
	return v, nil
}

// hashDest scans a bytea into a keys.Hash without allocating.
type hashDest struct{ h *keys.Hash }

// ScanBytes implements pgtype.BytesScanner.
func (d hashDest) ScanBytes(v []byte) error {
	if len(v) != len(d.h) {
		return fmt.Errorf("stored hash has %d bytes", len(v))
	}
	copy(d.h[:], v)
	return nil
}

var _ pgtype.BytesScanner = hashDest{}

func scanPGKey(row pgx.Row) (keys.Record, error) {
	var (
		r                           keys.Record
		env                         string
		expires, revoked, used, rol pgtype.Timestamptz
		replaced                    pgtype.Text
	)
	err := row.Scan(&r.ID, hashDest{&r.Hash}, &r.Prefix, &r.Last4, &r.Tenant, &r.Name, &env, &r.Scopes, &r.Plan, &r.Lineage,
		&r.CreatedAt, &expires, &revoked, &used, &rol, &replaced, &r.Imported, &r.Version)
	if err != nil {
		return keys.Record{}, err
	}
	r.Env = keys.Env(env)
	r.Scopes = scopesOrEmpty(r.Scopes)
	r.CreatedAt = r.CreatedAt.UTC()
	r.ExpiresAt = fromPGTime(expires)
	r.RevokedAt = fromPGTime(revoked)
	r.LastUsedAt = fromPGTime(used)
	r.RolledAt = fromPGTime(rol)
	r.ReplacedBy = replaced.String
	return r, nil
}

func scanPGGrant(row pgx.Row) (keys.Grant, error) {
	var (
		g       keys.Grant
		revoked pgtype.Timestamptz
	)
	if err := row.Scan(&g.Tenant, &g.Org, &g.Scopes, &g.CreatedAt, &g.UpdatedAt, &revoked, &g.Version); err != nil {
		return keys.Grant{}, err
	}
	g.Scopes = scopesOrEmpty(g.Scopes)
	g.CreatedAt = g.CreatedAt.UTC()
	g.UpdatedAt = g.UpdatedAt.UTC()
	g.RevokedAt = fromPGTime(revoked)
	return g, nil
}

// pgTime is a time as a query argument: NULL for the zero time.
func pgTime(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: dbTime(t), Valid: true}
}

func fromPGTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// pgErr wraps err with op, mapping "no rows" to ErrNotFound and unique
// violations to ErrConflict.
func pgErr(op string, err error) error {
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	case errors.As(err, &pe) && pe.Code == "23505":
		return fmt.Errorf("store: %s: %w: %w", op, ErrConflict, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
