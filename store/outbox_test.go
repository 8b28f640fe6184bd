package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// The outbox tests join the shared suite (runSuite): each runs on SQLite
// and on the real PostgreSQL.

// undispatched reads every outbox event not yet dispatched, routing none.
func undispatched(t *testing.T, db DB) []Event {
	t.Helper()
	var out []Event
	if _, err := db.DispatchEvents(t.Context(), 1000, time.Now(), func(e Event) []string {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// testOutboxFromAudit: every audit event is in the outbox under its id,
// with its actor, details and subject as the change left it — never a
// hash — and a failed change leaves no outbox entry.
func testOutboxFromAudit(t *testing.T, db DB) {
	ctx := WithOrigin(t.Context(), Origin{Actor: Actor{Type: ActorAdminToken, Name: "ci"}, RequestID: "req-7"})
	a := newRecord("key_a", "acme")
	if _, err := db.InsertKey(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.RollKey(ctx, "key_a", newRecord("key_b", "acme"), time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeKey(ctx, "key_b", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeKey(ctx, "key_b", time.Time{}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := db.SetGrant(ctx, keys.Grant{Tenant: "acme", Org: "clinic-1", Scopes: []string{"patients:read"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.KeyEvent(ctx, "key_a", ActionKeyLeaked, map[string]any{"url": "https://github.com/x/y", "source": "content"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.KeyEvent(ctx, "key_nope", ActionKeyLeaked, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("leak of an unknown key: %v", err)
	}

	audit := must[[]AuditEvent](t)(db.AuditEvents(t.Context(), AuditFilter{}))
	evs := undispatched(t, db)
	if len(evs) != len(audit) {
		t.Fatalf("%d outbox events for %d audit events", len(evs), len(audit))
	}
	for i, e := range evs {
		ae := audit[len(audit)-1-i] // the audit log is newest first, the outbox oldest first
		if e.ID != ae.ID || e.Type != ae.Action || e.Tenant != ae.Tenant || e.KeyID != ae.KeyID || e.Actor != ae.Actor ||
			e.RequestID != "req-7" || !e.At.Equal(ae.At) || fmt.Sprint(e.Details) != fmt.Sprint(ae.Details) {
			t.Errorf("outbox event %d = %+v\naudit event = %+v", i, e, ae)
		}
		if e.Key != nil && e.Key.Hash != (keys.Hash{}) {
			t.Errorf("event %d (%s) carries a hash", i, e.Type)
		}
	}
	byType := map[string]Event{}
	for _, e := range evs {
		byType[e.Type] = e
	}
	if k := byType[ActionKeyCreated].Key; k == nil || k.ID != "key_a" || k.Name != a.Name || k.Tenant != "acme" || !k.RolledAt.IsZero() {
		t.Errorf("key.created subject: %+v", k)
	}
	if k := byType[ActionKeyRolled].Key; k == nil || k.ID != "key_a" || k.ReplacedBy != "key_b" || k.RolledAt.IsZero() || k.ExpiresAt.IsZero() {
		t.Errorf("key.rolled subject is not the rolled key as the roll left it: %+v", k)
	}
	if k := byType[ActionKeyRevoked].Key; k == nil || k.ID != "key_b" || k.RevokedAt.IsZero() {
		t.Errorf("key.revoked subject: %+v", k)
	}
	if g := byType[ActionGrantSet].Grant; g == nil || g.Org != "clinic-1" || !slices.Equal(g.Scopes, []string{"patients:read"}) {
		t.Errorf("grant.set subject: %+v", g)
	}
	if e := byType[ActionKeyLeaked]; e.Key == nil || e.Key.ID != "key_a" || e.Details["url"] != "https://github.com/x/y" {
		t.Errorf("key.leaked: %+v", e)
	}
	// A change that fails after its audit event leaves no outbox entry.
	w := db.(writer)
	r, _ := prepareKey(newRecord("key_gone", "acme"))
	boom := errors.New("boom")
	err := w.write(t.Context(), func(ctx2 context.Context, tx *writeTx) error {
		if err := tx.insertKey(ctx2, &r); err != nil {
			return err
		}
		if err := tx.audit(ctx2, ActionKeyCreated, r.Tenant, r.ID, nil); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if evs := undispatched(t, db); len(evs) != 0 {
		t.Fatalf("a failed change left %d outbox events", len(evs))
	}
}

// testOutboxDeliveries: dispatching makes one delivery per endpoint once;
// a claim holds a delivery from other claims until its lease ends; a
// result is stored only under the lease it was claimed with.
func testOutboxDeliveries(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now().UTC()
	ev := Event{Type: EventKeyExpiring, Tenant: "acme", KeyID: "key_a", At: now, Actor: Actor{Type: ActorSystem, Name: "keygate"},
		Details: map[string]any{"before": "1d"}}
	if n, err := db.AddEvents(ctx, []Event{ev, {Type: EventKeyExpired, Tenant: "other", At: now.Add(time.Millisecond)}}); err != nil || n != 2 {
		t.Fatalf("AddEvents = %d, %v", n, err)
	}
	if oldest := must[time.Time](t)(db.OldestUndelivered(ctx)); !oldest.Equal(dbTime(now)) {
		t.Errorf("oldest undelivered %v, want %v", oldest, dbTime(now))
	}
	route := func(e Event) []string {
		if e.Tenant == "acme" {
			return []string{"https://a.example/hook", "https://b.example/hook"}
		}
		return nil
	}
	if n := must[int](t)(db.DispatchEvents(ctx, 10, now, route)); n != 2 {
		t.Fatalf("dispatched %d events, want 2", n)
	}
	if n := must[int](t)(db.DispatchEvents(ctx, 10, now, route)); n != 0 {
		t.Fatalf("dispatched %d events a second time", n)
	}
	lease := now.Add(time.Minute)
	got := must[[]Delivery](t)(db.ClaimDeliveries(ctx, now, lease, 10))
	if len(got) != 2 || got[0].Event.Details["before"] != "1d" || got[0].Event.Type != EventKeyExpiring {
		t.Fatalf("claimed %+v", got)
	}
	if again := must[[]Delivery](t)(db.ClaimDeliveries(ctx, now, lease, 10)); len(again) != 0 {
		t.Fatalf("claimed %d held deliveries again", len(again))
	}
	a, b := got[0], got[1]
	if a.Endpoint > b.Endpoint {
		a, b = b, a
	}
	// a is delivered; b fails and is due again in a second.
	if ok := must[bool](t)(db.FinishDelivery(ctx, DeliveryResult{EventID: a.Event.ID, Endpoint: a.Endpoint, Lease: a.NextAt,
		Status: DeliveryDelivered, At: now, Code: 204})); !ok {
		t.Fatal("the delivery's result was refused under its own lease")
	}
	if ok := must[bool](t)(db.FinishDelivery(ctx, DeliveryResult{EventID: a.Event.ID, Endpoint: a.Endpoint, Lease: a.NextAt,
		Status: DeliveryPending, At: now})); ok {
		t.Fatal("a finished delivery took a second result")
	}
	if ok := must[bool](t)(db.FinishDelivery(ctx, DeliveryResult{EventID: b.Event.ID, Endpoint: b.Endpoint, Lease: now.Add(2 * time.Minute),
		Status: DeliveryDelivered, At: now})); ok {
		t.Fatal("a result under another lease was stored")
	}
	retry := now.Add(time.Second)
	if ok := must[bool](t)(db.FinishDelivery(ctx, DeliveryResult{EventID: b.Event.ID, Endpoint: b.Endpoint, Lease: b.NextAt,
		Status: DeliveryPending, NextAt: retry, At: now, Code: 503, Error: strings.Repeat("é", 400)})); !ok {
		t.Fatal("the retry was refused")
	}
	if early := must[[]Delivery](t)(db.ClaimDeliveries(ctx, now, lease, 10)); len(early) != 0 {
		t.Fatalf("claimed a delivery before it was due: %+v", early)
	}
	due := must[[]Delivery](t)(db.ClaimDeliveries(ctx, retry, lease, 10))
	if len(due) != 1 || due[0].Endpoint != b.Endpoint || due[0].Attempts != 1 || due[0].LastCode != 503 || len(due[0].LastError) > 503 {
		t.Fatalf("due again: %+v", due)
	}

	all := must[[]Delivery](t)(db.Deliveries(ctx, DeliveryFilter{}))
	if len(all) != 2 {
		t.Fatalf("%d deliveries listed, want 2", len(all))
	}
	delivered := must[[]Delivery](t)(db.Deliveries(ctx, DeliveryFilter{Status: DeliveryDelivered}))
	if len(delivered) != 1 || delivered[0].Endpoint != a.Endpoint || delivered[0].Attempts != 1 || delivered[0].LastCode != 204 {
		t.Fatalf("delivered: %+v", delivered)
	}
	if oldest := must[time.Time](t)(db.OldestUndelivered(ctx)); !oldest.Equal(dbTime(now)) {
		t.Errorf("oldest undelivered with b pending: %v", oldest)
	}
	if _, err := db.FinishDelivery(ctx, DeliveryResult{EventID: b.Event.ID, Endpoint: b.Endpoint, Lease: due[0].NextAt,
		Status: DeliveryFailed, At: now}); err != nil {
		t.Fatal(err)
	}
	if oldest := must[time.Time](t)(db.OldestUndelivered(ctx)); !oldest.IsZero() {
		t.Errorf("oldest undelivered with nothing pending: %v", oldest)
	}
	if _, err := db.FinishDelivery(ctx, DeliveryResult{Status: "lost"}); err == nil {
		t.Error("a bad status was accepted")
	}
	// Pruning removes finished deliveries and their events.
	if n := must[int64](t)(db.PruneEvents(ctx, now.Add(time.Hour))); n != 4 {
		t.Errorf("pruned %d rows, want 4 (2 deliveries, 2 events)", n)
	}
	if all := must[[]Delivery](t)(db.Deliveries(ctx, DeliveryFilter{})); len(all) != 0 {
		t.Errorf("deliveries after pruning: %+v", all)
	}
}

// testOutboxDedupe: a notice with a Dedupe already known is not added
// again, whoever adds it; events without one always are.
func testOutboxDedupe(t *testing.T, db DB) {
	ctx := t.Context()
	e := Event{Type: EventKeyRateLimited, Tenant: "acme", KeyID: "key_a", Dedupe: "key.rate_limited/key_a/60/1"}
	if n := must[int](t)(db.AddEvents(ctx, []Event{e, e})); n != 1 {
		t.Fatalf("added %d of two equal notices", n)
	}
	if n := must[int](t)(db.AddEvents(ctx, []Event{e, {Type: EventKeyExpired, Tenant: "acme"}, {Type: EventKeyExpired, Tenant: "acme"}})); n != 2 {
		t.Fatalf("added %d, want the 2 without dedupe", n)
	}
	if _, err := db.AddEvents(ctx, []Event{{Type: "", Tenant: "acme"}}); err == nil {
		t.Error("an event without a type was added")
	}
	if evs := undispatched(t, db); len(evs) != 3 {
		t.Errorf("%d events in the outbox, want 3", len(evs))
	}
}

// testOutboxClaimsOnce: claimers racing over the same deliveries each get
// a share, and no delivery is claimed twice.
func testOutboxClaimsOnce(t *testing.T, db DB) {
	ctx := t.Context()
	const n = 60
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = Event{Type: EventKeyExpired, Tenant: "acme", Dedupe: fmt.Sprint("e", i)}
	}
	must[int](t)(db.AddEvents(ctx, evs))
	now := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, err := db.DispatchEvents(ctx, 7, now, func(Event) []string { return []string{"https://a.example"} }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for undispatchedLeft := true; undispatchedLeft; {
		n, err := db.DispatchEvents(ctx, 100, now, func(Event) []string { return []string{"https://a.example"} })
		if err != nil {
			t.Fatal(err)
		}
		undispatchedLeft = n > 0
	}
	var mu sync.Mutex
	seen := map[string]int{}
	for range 4 {
		wg.Go(func() {
			for {
				ds, err := db.ClaimDeliveries(ctx, now, now.Add(time.Minute), 5)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.Event.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d deliveries claimed, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("delivery of %s claimed %d times", id, c)
		}
	}
}

// testExpiringKeys: keys in force with an expiry in the window, by ID.
func testExpiringKeys(t *testing.T, db DB) {
	ctx := t.Context()
	now := time.Now().UTC()
	for _, k := range []struct {
		id      string
		expires time.Duration
		revoked bool
	}{
		{"key_1", time.Hour, false},
		{"key_2", 5 * 24 * time.Hour, false},
		{"key_3", 30 * 24 * time.Hour, false}, // beyond the window
		{"key_4", -time.Hour, false},          // expired within the window
		{"key_5", time.Hour, true},            // revoked
		{"key_6", 0, false},                   // never expires
	} {
		r := newRecord(k.id, "acme")
		if k.expires != 0 {
			r.ExpiresAt = now.Add(k.expires)
		}
		if k.revoked {
			r.RevokedAt = now
		}
		must[keys.Record](t)(db.InsertKey(ctx, r))
	}
	got := must[[]keys.Record](t)(db.ExpiringKeys(ctx, now.Add(-24*time.Hour), now.Add(7*24*time.Hour), "", 0))
	if ids(got) != "key_1,key_2,key_4" {
		t.Errorf("expiring keys %s, want key_1,key_2,key_4", ids(got))
	}
	page := must[[]keys.Record](t)(db.ExpiringKeys(ctx, now.Add(-24*time.Hour), now.Add(7*24*time.Hour), "key_1", 1))
	if ids(page) != "key_2" {
		t.Errorf("page after key_1: %s", ids(page))
	}
}
