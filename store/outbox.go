package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/keys"
)

// Event types that are not audit actions: Keygate notices them itself
// (events adds them with AddEvents).
const (
	EventKeyExpiring    = "key.expiring"
	EventKeyExpired     = "key.expired"
	EventKeyRateLimited = "key.rate_limited"
)

// EventTypes lists every event type a webhook endpoint may ask for: the
// audit actions, then Keygate's own notices.
func EventTypes() []string {
	return append(Actions(), EventKeyExpiring, EventKeyExpired, EventKeyRateLimited)
}

// Event is one entry of the events outbox: an audit event (under the audit
// event's id, written in its transaction) or a notice Keygate adds itself.
// It never holds a key's hash or a secret.
type Event struct {
	ID        string // "evt_…", time-ordered; the webhook-id of its deliveries
	At        time.Time
	Type      string
	Tenant    string
	KeyID     string
	Actor     Actor
	RequestID string
	// Key and Grant are the subject as it was when the event happened:
	// a key without its hash, or a grant.
	Key   *keys.Record
	Grant *keys.Grant
	// Details says what happened, in the event's own terms.
	Details map[string]any
	// Dedupe, when set, makes the event idempotent: AddEvents adds no
	// second event with the same Dedupe, whoever adds it.
	Dedupe string
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"   // not yet delivered; due at NextAt
	DeliveryDelivered = "delivered" // the endpoint answered 2xx
	DeliveryFailed    = "failed"    // given up: past webhooks.max_age, or 410 Gone
)

// Delivery is one event to one webhook endpoint.
type Delivery struct {
	Event     Event
	Endpoint  string // the endpoint's URL
	Status    string
	Attempts  int
	NextAt    time.Time // pending: when it is due, or until when a sender holds it
	CreatedAt time.Time
	UpdatedAt time.Time
	LastCode  int    // the HTTP status of the last attempt; 0: none
	LastError string // why the last attempt failed
}

// DeliveryResult is the outcome of one attempt, for FinishDelivery.
type DeliveryResult struct {
	EventID, Endpoint string
	// Lease is the NextAt ClaimDeliveries returned: the result is stored
	// only while the delivery is still held under it.
	Lease  time.Time
	Status string    // DeliveryDelivered, DeliveryFailed, or DeliveryPending to retry
	NextAt time.Time // for DeliveryPending: when to try again
	At     time.Time
	Code   int
	Error  string
}

// DeliveryFilter selects deliveries, newest event first.
type DeliveryFilter struct {
	Status string // empty: all
	After  string // cursor: only deliveries of events older than this event ID
	Limit  int    // 0: 100; at most 1,000
}

// Outbox is the events outbox and the webhook deliveries made from it,
// kept in the key database. Every audit event is added to it in its own
// transaction (see writeTx.audit); DB embeds it.
type Outbox interface {
	// AddEvents adds notices; one whose Dedupe is known already is left
	// out. An empty ID is made from At. It says how many it added.
	AddEvents(ctx context.Context, evs []Event) (int, error)
	// DispatchEvents takes up to limit events not yet dispatched, oldest
	// first, makes a pending delivery, due at now, for each endpoint that
	// endpoints names for it, and marks them dispatched, in one
	// transaction that other replicas' calls skip (PostgreSQL: FOR UPDATE
	// SKIP LOCKED). It says how many events it dispatched.
	DispatchEvents(ctx context.Context, limit int, now time.Time, endpoints func(Event) []string) (int, error)
	// ClaimDeliveries takes up to limit pending deliveries due at now,
	// earliest first, with their events, and holds them until until (their
	// NextAt, the lease FinishDelivery names): another replica's claim
	// skips them meanwhile, and takes them again if until passes with no
	// result, as after a crash.
	ClaimDeliveries(ctx context.Context, now, until time.Time, limit int) ([]Delivery, error)
	// FinishDelivery stores an attempt's result and counts the attempt.
	// It reports false, storing nothing, when the delivery is no longer
	// held under r.Lease.
	FinishDelivery(ctx context.Context, r DeliveryResult) (bool, error)
	// Deliveries lists deliveries as f selects, newest event first.
	Deliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error)
	// OldestUndelivered is the time of the oldest event not yet dispatched
	// or with a pending delivery; zero when there is none.
	OldestUndelivered(ctx context.Context) (time.Time, error)
	// ExpiringKeys pages through keys, by ID after afterID, that are not
	// revoked and expire after after and at or before until.
	ExpiringKeys(ctx context.Context, after, until time.Time, afterID string, limit int) ([]keys.Record, error)
	// PruneEvents deletes the finished deliveries of events made before
	// before, and those events once dispatched and without a pending
	// delivery. It says how many rows it deleted.
	PruneEvents(ctx context.Context, before time.Time) (int64, error)
	// KeyEvent records an audit event about key id that changes nothing
	// of the key (key.leaked), with its outbox entry; ErrNotFound for an
	// unknown id. It returns the key.
	KeyEvent(ctx context.Context, id, action string, details map[string]any) (keys.Record, error)
}

const (
	defaultDeliveryPage = 100
	maxDeliveryPage     = 1000
)

// outboxArgs is e as the arguments of stmtInsertOutbox.
func outboxArgs(c codec, e *Event) ([]any, error) {
	subject, err := encodeSubject(e.Key, e.Grant)
	if err != nil {
		return nil, fmt.Errorf("event %s subject: %w", e.ID, err)
	}
	details := e.Details
	if details == nil {
		details = map[string]any{}
	}
	d, err := json.Marshal(details)
	if err != nil {
		return nil, fmt.Errorf("event %s details: %w", e.ID, err)
	}
	return []any{e.ID, c.time(e.At), e.Type, e.Tenant, nullString(e.KeyID), e.Actor.Type, e.Actor.Name,
		nullString(e.RequestID), subject, string(d), nullString(e.Dedupe)}, nil
}

// outbox adds e to the outbox in this transaction.
func (t *writeTx) outbox(ctx context.Context, e Event) error {
	args, err := outboxArgs(t.q, &e)
	if err != nil {
		return err
	}
	return t.q.exec(ctx, stmtInsertOutbox, args...)
}

// AddEvents implements Outbox.
func (k *keyDB) AddEvents(ctx context.Context, evs []Event) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	var added int
	err := k.d.tx(ctx, func(q queries) error {
		added = 0
		for _, e := range evs {
			e.At = orNow(e.At)
			if e.ID == "" {
				id, err := newEventID(e.At)
				if err != nil {
					return err
				}
				e.ID = id
			}
			if e.Type == "" || e.Tenant == "" {
				return invalidRecord(fmt.Sprintf("event %s needs a type and a tenant", e.ID))
			}
			args, err := outboxArgs(q, &e)
			if err != nil {
				return err
			}
			n, err := q.affected(ctx, stmtInsertOutbox, args...)
			if err != nil {
				return err
			}
			added += int(n)
		}
		return nil
	})
	return added, k.failed(err)
}

// DispatchEvents implements Outbox.
func (k *keyDB) DispatchEvents(ctx context.Context, limit int, now time.Time, endpoints func(Event) []string) (int, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	now = orNow(now)
	var n int
	err := k.d.tx(ctx, func(q queries) error {
		evs, err := q.outbox(ctx, k.sql.undispatched, max(limit, 1))
		if err != nil {
			return err
		}
		for _, e := range evs {
			for _, ep := range endpoints(e) {
				if err := q.exec(ctx, stmtInsertDelivery, e.ID, ep, q.time(now)); err != nil {
					return err
				}
			}
			if err := q.exec(ctx, stmtMarkDispatched, e.ID); err != nil {
				return err
			}
		}
		n = len(evs)
		return nil
	})
	return n, k.failed(err)
}

// ClaimDeliveries implements Outbox.
func (k *keyDB) ClaimDeliveries(ctx context.Context, now, until time.Time, limit int) ([]Delivery, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	now, until = orNow(now), dbTime(until)
	var out []Delivery
	err := k.d.tx(ctx, func(q queries) error {
		ds, err := q.deliveries(ctx, k.sql.dueDeliveries, q.time(now), max(limit, 1))
		if err != nil {
			return err
		}
		for i := range ds {
			if err := q.exec(ctx, stmtLeaseDelivery, q.time(until), ds[i].Event.ID, ds[i].Endpoint); err != nil {
				return err
			}
			ds[i].NextAt = until
		}
		out = ds
		return nil
	})
	return out, k.failed(err)
}

// FinishDelivery implements Outbox.
func (k *keyDB) FinishDelivery(ctx context.Context, r DeliveryResult) (bool, error) {
	switch r.Status {
	case DeliveryPending, DeliveryDelivered, DeliveryFailed:
	default:
		return false, invalidRecord(fmt.Sprintf("delivery status %q is not pending, delivered or failed", r.Status))
	}
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	at := orNow(r.At)
	next := dbTime(r.NextAt)
	if next.IsZero() {
		next = at
	}
	var n int64
	err := k.d.tx(ctx, func(q queries) error {
		var err error
		n, err = q.affected(ctx, stmtFinishDelivery, r.Status, q.time(next), q.time(at), r.Code, truncateText(r.Error, 500),
			r.EventID, r.Endpoint, q.time(dbTime(r.Lease)))
		return err
	})
	return n == 1, k.failed(err)
}

// truncateText cuts s to at most n bytes, on a rune boundary.
func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Deliveries implements Outbox.
func (k *keyDB) Deliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	var p pageQuery
	if f.Status != "" {
		p.add("d.status = $%d", f.Status)
	}
	if f.After != "" {
		p.add("d.event_id < $%d", f.After)
	}
	q, args := p.sql(selectDeliveries, "d.event_id DESC, d.endpoint", f.Limit, defaultDeliveryPage, maxDeliveryPage)
	ds, err := k.reads.deliveries(ctx, q, args...)
	return ds, k.failed(err)
}

// OldestUndelivered implements Outbox.
func (k *keyDB) OldestUndelivered(ctx context.Context) (time.Time, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	us, err := k.reads.scalar(ctx, k.sql.oldestUndelivered)
	if err != nil || us == 0 {
		return time.Time{}, k.failed(err)
	}
	return time.UnixMicro(us).UTC(), nil
}

// ExpiringKeys implements Outbox.
func (k *keyDB) ExpiringKeys(ctx context.Context, after, until time.Time, afterID string, limit int) ([]keys.Record, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	q, args := withLimit(stmtExpiringKeys, []any{k.reads.time(dbTime(after)), k.reads.time(dbTime(until)), afterID}, limit)
	rs, err := k.reads.keys(ctx, q, args...)
	return rs, k.failed(err)
}

// PruneEvents implements Outbox.
func (k *keyDB) PruneEvents(ctx context.Context, before time.Time) (int64, error) {
	ctx, cancel := k.timeout(ctx)
	defer cancel()
	horizon := eventIDAt(before)
	var n int64
	err := k.d.tx(ctx, func(q queries) error {
		d, err := q.affected(ctx, stmtPruneDeliveries, horizon)
		if err != nil {
			return err
		}
		e, err := q.affected(ctx, stmtPruneOutbox, horizon)
		n = d + e
		return err
	})
	return n, k.failed(err)
}

// KeyEvent implements Outbox.
func (k *keyDB) KeyEvent(ctx context.Context, id, action string, details map[string]any) (keys.Record, error) {
	var out keys.Record
	err := k.write(ctx, func(ctx context.Context, tx *writeTx) error {
		r, err := tx.lockKey(ctx, id)
		if err != nil {
			return err
		}
		out = r
		return tx.audit(ctx, action, r.Tenant, r.ID, details)
	})
	return out, k.failed(err)
}
