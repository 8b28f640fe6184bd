package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keys"
)

// The outbox's statements, in both dialects; dialectSQL holds the few
// that differ (undispatched, dueDeliveries, oldestUndelivered).
const (
	outboxColumns    = `id, at, type, tenant, key_id, actor_type, actor_name, request_id, subject, details, dedupe`
	stmtInsertOutbox = `INSERT INTO outbox_events (` + outboxColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (dedupe) DO NOTHING`
	selectUndispatched = `SELECT ` + outboxColumns + ` FROM outbox_events WHERE dispatched = false ORDER BY id LIMIT $1`
	stmtMarkDispatched = `UPDATE outbox_events SET dispatched = true WHERE id = $1`

	stmtInsertDelivery = `INSERT INTO webhook_deliveries (event_id, endpoint, status, next_at, created_at, updated_at)
VALUES ($1, $2, 'pending', $3, $3, $3) ON CONFLICT (event_id, endpoint) DO NOTHING`
	deliveryColumns = `d.event_id, d.endpoint, d.status, d.attempts, d.next_at, d.created_at, d.updated_at, d.last_code, d.last_error,
	e.at, e.type, e.tenant, e.key_id, e.actor_type, e.actor_name, e.request_id, e.subject, e.details, e.dedupe`
	selectDeliveries   = `SELECT ` + deliveryColumns + ` FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id`
	selectDue          = selectDeliveries + ` WHERE d.status = 'pending' AND d.next_at <= $1 ORDER BY d.next_at LIMIT $2`
	stmtLeaseDelivery  = `UPDATE webhook_deliveries SET next_at = $1 WHERE event_id = $2 AND endpoint = $3`
	stmtFinishDelivery = `UPDATE webhook_deliveries
SET status = $1, next_at = $2, updated_at = $3, last_code = $4, last_error = $5, attempts = attempts + 1
WHERE event_id = $6 AND endpoint = $7 AND status = 'pending' AND next_at = $8`
	// undeliveredAt is the times of the oldest undispatched event and of
	// the oldest event with a pending delivery.
	undeliveredAt = `SELECT min(at) AS at FROM outbox_events WHERE dispatched = false
UNION ALL
SELECT min(e.at) FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id WHERE d.status = 'pending'`

	stmtExpiringKeys = selectKeys + `
WHERE revoked_at IS NULL AND expires_at IS NOT NULL AND expires_at > $1 AND expires_at <= $2 AND id > $3
ORDER BY id`
	stmtPruneDeliveries = `DELETE FROM webhook_deliveries WHERE event_id < $1 AND status <> 'pending'`
	stmtPruneOutbox     = `DELETE FROM outbox_events WHERE id < $1 AND dispatched = true
AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = outbox_events.id)`
)

// decodeEvent fills e's subject and details from their stored JSON.
func decodeEvent(e *Event, subject, details []byte) error {
	if err := decodeSubject(subject, e); err != nil {
		return err
	}
	d, err := decodeDetails(details)
	e.Details = d
	return err
}

func (p pgQueries) outbox(ctx context.Context, query string, args ...any) ([]Event, error) {
	rows, _ := p.q.Query(ctx, query, args...)
	return pgx.CollectRows(rows, scanPGOutbox[pgx.CollectableRow])
}

func (p pgQueries) deliveries(ctx context.Context, query string, args ...any) ([]Delivery, error) {
	rows, _ := p.q.Query(ctx, query, args...)
	return pgx.CollectRows(rows, scanPGDelivery[pgx.CollectableRow])
}

func scanPGOutbox[R rowScanner](row R) (Event, error) {
	var e Event
	var subject, details []byte
	err := row.Scan(&e.ID, pgTimeDest{&e.At}, &e.Type, &e.Tenant, pgTextDest{&e.KeyID}, &e.Actor.Type, &e.Actor.Name,
		pgTextDest{&e.RequestID}, &subject, &details, pgTextDest{&e.Dedupe})
	if err != nil {
		return Event{}, err
	}
	return e, decodeEvent(&e, subject, details)
}

func scanPGDelivery[R rowScanner](row R) (Delivery, error) {
	var d Delivery
	e := &d.Event
	var subject, details []byte
	err := row.Scan(&e.ID, &d.Endpoint, &d.Status, &d.Attempts, pgTimeDest{&d.NextAt}, pgTimeDest{&d.CreatedAt},
		pgTimeDest{&d.UpdatedAt}, &d.LastCode, &d.LastError,
		pgTimeDest{&e.At}, &e.Type, &e.Tenant, pgTextDest{&e.KeyID}, &e.Actor.Type, &e.Actor.Name,
		pgTextDest{&e.RequestID}, &subject, &details, pgTextDest{&e.Dedupe})
	if err != nil {
		return Delivery{}, err
	}
	return d, decodeEvent(e, subject, details)
}

func (s sqliteQueries) outbox(ctx context.Context, query string, args ...any) ([]Event, error) {
	rows, err := s.rows(ctx, query, args)
	return collect(rows, err, scanSQLiteOutbox)
}

func (s sqliteQueries) deliveries(ctx context.Context, query string, args ...any) ([]Delivery, error) {
	rows, err := s.rows(ctx, query, args)
	return collect(rows, err, scanSQLiteDelivery)
}

func scanSQLiteOutbox(row rowScanner) (Event, error) {
	var e Event
	var subject, details string
	err := row.Scan(&e.ID, micros{&e.At}, &e.Type, &e.Tenant, nullText{&e.KeyID}, &e.Actor.Type, &e.Actor.Name,
		nullText{&e.RequestID}, &subject, &details, nullText{&e.Dedupe})
	if err != nil {
		return Event{}, err
	}
	return e, decodeEvent(&e, []byte(subject), []byte(details))
}

func scanSQLiteDelivery(row rowScanner) (Delivery, error) {
	var d Delivery
	e := &d.Event
	var subject, details string
	err := row.Scan(&e.ID, &d.Endpoint, &d.Status, &d.Attempts, micros{&d.NextAt}, micros{&d.CreatedAt},
		micros{&d.UpdatedAt}, &d.LastCode, &d.LastError,
		micros{&e.At}, &e.Type, &e.Tenant, nullText{&e.KeyID}, &e.Actor.Type, &e.Actor.Name,
		nullText{&e.RequestID}, &subject, &details, nullText{&e.Dedupe})
	if err != nil {
		return Delivery{}, err
	}
	return d, decodeEvent(e, []byte(subject), []byte(details))
}

// eventSubject is how an event's key or grant is stored: every field of
// the record but its hash.
type eventSubject struct {
	Key   *subjectKey `json:"key,omitempty"`
	Grant *keys.Grant `json:"grant,omitempty"`
}

type subjectKey struct {
	ID           string            `json:"id"`
	Prefix       string            `json:"prefix"`
	Last4        string            `json:"last4"`
	Tenant       string            `json:"tenant"`
	Name         string            `json:"name"`
	Env          keys.Env          `json:"env"`
	Scopes       []string          `json:"scopes"`
	Plan         string            `json:"plan"`
	Lineage      string            `json:"lineage"`
	CreatedAt    time.Time         `json:"created_at"`
	ExpiresAt    time.Time         `json:"expires_at"`
	RevokedAt    time.Time         `json:"revoked_at"`
	LastUsedAt   time.Time         `json:"last_used_at"`
	RolledAt     time.Time         `json:"rolled_at"`
	ReplacedBy   string            `json:"replaced_by"`
	Imported     bool              `json:"imported"`
	Version      int64             `json:"version"`
	AllowedCIDRs []string          `json:"allowed_cidrs,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

func encodeSubject(k *keys.Record, g *keys.Grant) (string, error) {
	var s eventSubject
	if k != nil {
		s.Key = &subjectKey{ID: k.ID, Prefix: k.Prefix, Last4: k.Last4, Tenant: k.Tenant, Name: k.Name, Env: k.Env,
			Scopes: scopesOrEmpty(k.Scopes), Plan: k.Plan, Lineage: k.Lineage, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt,
			RevokedAt: k.RevokedAt, LastUsedAt: k.LastUsedAt, RolledAt: k.RolledAt, ReplacedBy: k.ReplacedBy,
			Imported: k.Imported, Version: k.Version, Metadata: k.Metadata}
		if len(k.AllowedCIDRs) > 0 {
			s.Key.AllowedCIDRs = keys.FormatCIDRs(k.AllowedCIDRs)
		}
	}
	s.Grant = g
	b, err := json.Marshal(s)
	return string(b), err
}

func decodeSubject(b []byte, e *Event) error {
	if len(b) == 0 {
		return nil
	}
	var s eventSubject
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("event %s subject: %w", e.ID, err)
	}
	if k := s.Key; k != nil {
		e.Key = &keys.Record{ID: k.ID, Prefix: k.Prefix, Last4: k.Last4, Tenant: k.Tenant, Name: k.Name, Env: k.Env,
			Scopes: scopesOrEmpty(k.Scopes), Plan: k.Plan, Lineage: k.Lineage, CreatedAt: k.CreatedAt.UTC(),
			ExpiresAt: utcOrZero(k.ExpiresAt), RevokedAt: utcOrZero(k.RevokedAt), LastUsedAt: utcOrZero(k.LastUsedAt),
			RolledAt: utcOrZero(k.RolledAt), ReplacedBy: k.ReplacedBy, Imported: k.Imported, Version: k.Version,
			Metadata: metadataOrNil(k.Metadata)}
		ps, err := keys.ParseCIDRs(k.AllowedCIDRs)
		if err != nil {
			return fmt.Errorf("event %s subject: allowed_cidrs: %w", e.ID, err)
		}
		e.Key.AllowedCIDRs = ps
	}
	e.Grant = s.Grant
	return nil
}

func utcOrZero(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
