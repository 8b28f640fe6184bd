package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/keygate/keygate/keys"
)

// pgQuerier is what *pgxpool.Pool and pgx.Tx share.
type pgQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// pgQueries implements queries on the pool or in a transaction. pgx
// prepares and caches every statement per connection by itself.
type pgQueries struct {
	pgCodec
	q pgQuerier
}

var _ queries = pgQueries{}

func (p pgQueries) key(ctx context.Context, query string, args ...any) (keys.Record, error) {
	return scanPGKey(p.q.QueryRow(ctx, query, args...))
}

// A failed Query's rows report its error, so CollectRows returns it.

func (p pgQueries) keys(ctx context.Context, query string, args ...any) ([]keys.Record, error) {
	rows, _ := p.q.Query(ctx, query, args...)
	return pgx.CollectRows(rows, scanPGKey[pgx.CollectableRow])
}

func (p pgQueries) grant(ctx context.Context, query string, args ...any) (keys.Grant, error) {
	return scanPGGrant(p.q.QueryRow(ctx, query, args...))
}

func (p pgQueries) grants(ctx context.Context, query string, args ...any) ([]keys.Grant, error) {
	rows, _ := p.q.Query(ctx, query, args...)
	return pgx.CollectRows(rows, scanPGGrant[pgx.CollectableRow])
}

func (p pgQueries) events(ctx context.Context, query string, args ...any) ([]AuditEvent, error) {
	rows, _ := p.q.Query(ctx, query, args...)
	return pgx.CollectRows(rows, scanPGEvent[pgx.CollectableRow])
}

func (p pgQueries) affected(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := p.q.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (p pgQueries) scalar(ctx context.Context, query string, args ...any) (int64, error) {
	var n int64
	err := p.q.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

func (p pgQueries) exec(ctx context.Context, query string, args ...any) error {
	_, err := p.q.Exec(ctx, query, args...)
	return err
}

// pgCodec implements codec: times as timestamptz, scopes as text[].
type pgCodec struct{}

func (pgCodec) time(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return dbTime(t)
}

func (pgCodec) scopes(s []string) any { return scopesOrEmpty(s) }

func scanPGKey[R rowScanner](row R) (keys.Record, error) {
	var r keys.Record
	err := row.Scan(&r.ID, hashDest{&r.Hash}, &r.Prefix, &r.Last4, &r.Tenant, &r.Name, (*string)(&r.Env), &r.Scopes,
		&r.Plan, &r.Lineage, pgTimeDest{&r.CreatedAt}, pgTimeDest{&r.ExpiresAt}, pgTimeDest{&r.RevokedAt},
		pgTimeDest{&r.LastUsedAt}, pgTimeDest{&r.RolledAt}, pgTextDest{&r.ReplacedBy}, &r.Imported, &r.Version,
		&r.AllowedCIDRs, &r.Metadata)
	if err != nil {
		return keys.Record{}, err
	}
	r.AllowedCIDRs, r.Metadata = cidrsOrNil(r.AllowedCIDRs), metadataOrNil(r.Metadata)
	r.Scopes = scopesOrEmpty(r.Scopes)
	return r, nil
}

func scanPGGrant[R rowScanner](row R) (keys.Grant, error) {
	var g keys.Grant
	err := row.Scan(&g.Tenant, &g.Org, &g.Scopes, pgTimeDest{&g.CreatedAt}, pgTimeDest{&g.UpdatedAt},
		pgTimeDest{&g.RevokedAt}, &g.Version)
	if err != nil {
		return keys.Grant{}, err
	}
	g.Scopes = scopesOrEmpty(g.Scopes)
	return g, nil
}

func scanPGEvent[R rowScanner](row R) (AuditEvent, error) {
	var e AuditEvent
	var details []byte
	err := row.Scan(&e.ID, pgTimeDest{&e.At}, &e.Action, &e.Tenant, pgTextDest{&e.KeyID}, &e.Actor.Type, &e.Actor.Name,
		pgTextDest{&e.SourceIP}, pgTextDest{&e.RequestID}, &details)
	if err != nil {
		return AuditEvent{}, err
	}
	e.Details, err = decodeDetails(details)
	return e, err
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

// pgTimeDest scans a timestamptz (NULL: the zero time), in UTC.
type pgTimeDest struct{ t *time.Time }

// ScanTimestamptz implements pgtype.TimestamptzScanner.
func (d pgTimeDest) ScanTimestamptz(v pgtype.Timestamptz) error {
	*d.t = time.Time{}
	if v.Valid {
		*d.t = v.Time.UTC()
	}
	return nil
}

// pgTextDest scans text or NULL (the empty string).
type pgTextDest struct{ s *string }

// ScanText implements pgtype.TextScanner.
func (d pgTextDest) ScanText(v pgtype.Text) error {
	*d.s = v.String
	return nil
}

var (
	_ pgtype.BytesScanner       = hashDest{}
	_ pgtype.TimestamptzScanner = pgTimeDest{}
	_ pgtype.TextScanner        = pgTextDest{}
)
