package events

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/store"
)

// TestEachTypeDeliveredOnce: every event type reaches a real receiver
// once, signed (the receiver verifies with the Standard Webhooks
// reference library), shaped {"type","timestamp","data"} with the key as
// the admin API shows it — never its secret or hash — and the actor.
func TestEachTypeDeliveredOnce(t *testing.T) {
	db := openSQLite(t)
	rc := newReceiver(t)
	pub := start(t, fastConfig(rc.endpoint(t)), db)
	svc := newAdmin(t, db)
	ctx := asCI(t)

	created, err := svc.Create(ctx, admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Name: "billing", Scopes: []string{"patients:read"}})
	if err != nil {
		t.Fatal(err)
	}
	id := created.Record.ID
	// The roll ends the key's grace in an hour, within 1d: key.expiring.
	_, rolled, err := svc.Roll(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Revoke(ctx, rolled.Record.ID); err != nil {
		t.Fatal(err)
	}
	later, err := svc.Create(ctx, admin.CreateRequest{Tenant: "acme", Env: keys.EnvTest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetExpiry(ctx, later.Record.ID, time.Now().Add(30*24*time.Hour)); err != nil { // beyond 7d: no notice yet
		t.Fatal(err)
	}
	var h keys.Hash
	h[0] = 1
	if _, err := svc.Import(ctx, admin.ImportRequest{SHA256: h.String(), Prefix: "sk_live_", Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetGrant(ctx, "acme", "clinic-1", []string{"patients:read"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RevokeGrant(ctx, "acme", "clinic-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.KeyEvent(ctx, id, store.ActionKeyLeaked, map[string]any{"url": "https://github.com/acme/app/blob/main/.env", "source": "content"}); err != nil {
		t.Fatal(err)
	}
	// An expired key (the store takes an expiry in the past; the admin
	// service would not).
	gone, err := svc.Create(ctx, admin.CreateRequest{Tenant: "acme", Env: keys.EnvTest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetExpiry(ctx, gone.Record.ID, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	// Many 429s of one key in one window: one event.
	w := limits.Window{Limit: 10, Period: time.Hour}
	for range 50 {
		pub.RateLimited(created.Record, w, time.Now())
	}

	want := map[string]int{
		store.ActionKeyCreated:  3, // a roll's new key is told of by key.rolled
		store.ActionKeyImported: 1, store.ActionKeyRevoked: 1, store.ActionKeyRolled: 1,
		store.ActionKeyExpiryChanged: 2, store.ActionGrantSet: 1, store.ActionGrantRevoked: 1,
		store.ActionKeyLeaked: 1, store.EventKeyExpiring: 1, store.EventKeyExpired: 1, store.EventKeyRateLimited: 1,
	}
	eventually(t, "every event delivered", func() bool { return maps.Equal(rc.types(), want) })
	// More scans and passes send nothing more: each was sent once.
	settle(t, pub.Publisher)
	if got := rc.types(); !maps.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for id, n := range rc.count {
		if n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	if len(rc.count) != len(rc.snapshot()) {
		t.Errorf("%d ids for %d deliveries", len(rc.count), len(rc.snapshot()))
	}
	for _, tk := range rc.snapshot() {
		if !strings.HasPrefix(tk.id, "evt_") || !store.ValidEventID(tk.id) {
			t.Errorf("webhook-id %q", tk.id)
		}
		raw := string(tk.raw)
		if strings.Contains(raw, created.Key) || strings.Contains(raw, rolled.Key) || strings.Contains(raw, created.Record.Hash.String()) ||
			strings.Contains(raw, `"hash"`) || strings.Contains(raw, `"key":"sk_`) {
			t.Errorf("%s carries a secret or a hash: %s", tk.typ, raw)
		}
		data := tk.body["data"].(map[string]any)
		if _, err := time.Parse(time.RFC3339Nano, tk.body["timestamp"].(string)); err != nil {
			t.Errorf("%s timestamp: %v", tk.typ, err)
		}
		actor := data["actor"].(map[string]any)
		switch tk.typ {
		case store.EventKeyExpiring, store.EventKeyExpired, store.EventKeyRateLimited:
			if actor["type"] != store.ActorSystem {
				t.Errorf("%s actor %v, want keygate itself", tk.typ, actor)
			}
		default:
			if actor["type"] != store.ActorAdminToken || actor["name"] != "ci" || data["request_id"] != "req-42" {
				t.Errorf("%s actor %v request %v", tk.typ, actor, data["request_id"])
			}
		}
		if strings.HasPrefix(tk.typ, "key.") {
			k, ok := data["key"].(map[string]any)
			if !ok || k["id"] == nil || k["tenant"] != "acme" || k["status"] == nil {
				t.Errorf("%s: no key record in %v", tk.typ, data)
			}
		}
		if strings.HasPrefix(tk.typ, "grant.") {
			if g, ok := data["grant"].(map[string]any); !ok || g["org"] != "clinic-1" {
				t.Errorf("%s: no grant in %v", tk.typ, data)
			}
		}
	}
	byType := map[string]took{}
	for _, tk := range rc.snapshot() {
		byType[tk.typ] = tk
	}
	details := func(typ string) map[string]any {
		return byType[typ].body["data"].(map[string]any)["details"].(map[string]any)
	}
	if d := details(store.ActionKeyLeaked); d["url"] != "https://github.com/acme/app/blob/main/.env" || d["source"] != "content" {
		t.Errorf("key.leaked details %v", d)
	}
	if d := details(store.EventKeyExpiring); d["before"] != "1d" {
		t.Errorf("key.expiring details %v", d)
	}
	if d := details(store.EventKeyRateLimited); d["limit"] != float64(10) || d["period"] != "1h" {
		t.Errorf("key.rate_limited details %v", d)
	}
	if k := byType[store.ActionKeyRevoked].body["data"].(map[string]any)["key"].(map[string]any); k["status"] != "revoked" {
		t.Errorf("key.revoked: the key's status is %v", k["status"])
	}
}

// TestReceiverDownThenUp: while the endpoint refuses, every event is
// retried with backoff under the same webhook-id; once it is back it gets
// every event, each once.
func TestReceiverDownThenUp(t *testing.T) {
	db := openSQLite(t)
	rc := newReceiver(t)
	rc.down.Store(503)
	pub := start(t, fastConfig(rc.endpoint(t)), db)
	svc := newAdmin(t, db)
	var ids []string
	for i := range 8 {
		c, err := svc.Create(asCI(t), admin.CreateRequest{Tenant: fmt.Sprint("t", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.Record.ID)
	}
	eventually(t, "every event refused at least twice", func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if len(rc.refused) != len(ids) {
			return false
		}
		for _, n := range rc.refused {
			if n < 2 {
				return false
			}
		}
		return true
	})
	if got := rc.snapshot(); len(got) != 0 {
		t.Fatalf("taken while down: %v", got)
	}
	pending, err := db.Deliveries(t.Context(), store.DeliveryFilter{Status: store.DeliveryPending})
	if err != nil || len(pending) != len(ids) {
		t.Fatalf("pending while down: %d, %v", len(pending), err)
	}
	for _, d := range pending {
		if d.LastCode != 503 || !strings.Contains(d.LastError, "down for maintenance") {
			t.Errorf("pending %s: last %d %q", d.Event.ID, d.LastCode, d.LastError)
		}
	}
	rc.down.Store(0)
	eventually(t, "every event taken once up", func() bool { return len(rc.snapshot()) == len(ids) })
	rc.mu.Lock()
	refusedIDs := slices.Sorted(maps.Keys(rc.refused))
	takenIDs := slices.Sorted(maps.Keys(rc.count))
	rc.mu.Unlock()
	if !slices.Equal(refusedIDs, takenIDs) {
		t.Errorf("ids refused %v\n    taken %v", refusedIDs, takenIDs)
	}
	for id, n := range rc.count {
		if n != 1 {
			t.Errorf("%s taken %d times", id, n)
		}
	}
	eventually(t, "every delivery stored", func() bool { return pub.Stats().Delivered == uint64(len(ids)) })
	delivered, err := db.Deliveries(t.Context(), store.DeliveryFilter{Status: store.DeliveryDelivered})
	if err != nil || len(delivered) != len(ids) {
		t.Fatalf("delivered: %d, %v", len(delivered), err)
	}
	for _, d := range delivered {
		if d.Attempts < 3 {
			t.Errorf("%s delivered after %d attempts, want at least 3", d.Event.ID, d.Attempts)
		}
	}
	if st := pub.Stats(); st.Delivered != uint64(len(ids)) || st.AttemptsFailed < uint64(2*len(ids)) || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	eventually(t, "nothing undelivered", func() bool { return pub.Stats().OldestUndelivered.IsZero() })
}

// TestGivenUp: an endpoint that never takes an event is retried until
// max_age, then the delivery is failed; 410 Gone fails it at once.
func TestGivenUp(t *testing.T) {
	for _, c := range []struct {
		name   string
		code   int32
		maxAge time.Duration
	}{
		{"past max_age", 500, 300 * time.Millisecond},
		{"410 Gone", 410, time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := openSQLite(t)
			rc := newReceiver(t)
			rc.down.Store(c.code)
			cfg := fastConfig(rc.endpoint(t))
			cfg.MaxAge = c.maxAge
			pub := start(t, cfg, db)
			if _, err := newAdmin(t, db).Create(asCI(t), admin.CreateRequest{Tenant: "acme"}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the delivery failed", func() bool { return pub.Stats().Failed == 1 })
			failed, err := db.Deliveries(t.Context(), store.DeliveryFilter{Status: store.DeliveryFailed})
			if err != nil || len(failed) != 1 || failed[0].LastCode != int(c.code) {
				t.Fatalf("failed deliveries %+v, %v", failed, err)
			}
			if c.code == 410 && failed[0].Attempts != 1 {
				t.Errorf("410 Gone retried: %d attempts", failed[0].Attempts)
			}
		})
	}
}

// TestShutdownMidAttempt: an attempt in flight when the publisher stops
// — the endpoint hangs — is left pending under its webhook-id, and a
// retry waiting for its backoff is left as it is; the next publisher
// delivers both, once.
func TestShutdownMidAttempt(t *testing.T) {
	db := openSQLite(t)
	hung := newReceiver(t)
	hung.hang.Store(true)
	refusing := newReceiver(t)
	refusing.down.Store(503)
	cfg := fastConfig(hung.endpoint(t), refusing.endpoint(t))
	cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour // the retry waits past the stop
	cfg.Timeout = time.Minute
	first := start(t, cfg, db)
	if _, err := newAdmin(t, db).Create(asCI(t), admin.CreateRequest{Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both endpoints reached", func() bool {
		return hung.arrivals.Load() == 1 && refusing.arrivals.Load() == 1 && first.Stats().AttemptsFailed == 1
	})
	first.stop()

	ds, err := db.Deliveries(t.Context(), store.DeliveryFilter{Status: store.DeliveryPending})
	if err != nil || len(ds) != 2 {
		t.Fatalf("pending after the stop: %+v, %v", ds, err)
	}
	for _, d := range ds {
		switch d.Endpoint {
		case hung.url():
			if !strings.Contains(d.LastError, "shutting down") || d.NextAt.After(time.Now()) {
				t.Errorf("the interrupted attempt: %+v", d)
			}
		case refusing.url():
			if d.LastCode != 503 || d.NextAt.Before(time.Now().Add(30*time.Minute)) {
				t.Errorf("the retry: %+v", d)
			}
		}
	}

	// Started again, with both endpoints healthy and the retry due.
	hung.hang.Store(false)
	refusing.down.Store(0)
	for _, d := range ds {
		if d.Endpoint == refusing.url() {
			if ok, err := db.FinishDelivery(t.Context(), store.DeliveryResult{EventID: d.Event.ID, Endpoint: d.Endpoint, Lease: d.NextAt,
				Status: store.DeliveryPending, NextAt: time.Now()}); err != nil || !ok {
				t.Fatalf("making the retry due: %v %v", ok, err)
			}
		}
	}
	start(t, fastConfig(hung.endpoint(t), refusing.endpoint(t)), db)
	eventually(t, "both delivered", func() bool { return len(hung.snapshot()) == 1 && len(refusing.snapshot()) == 1 })
	if a, b := hung.snapshot()[0].id, refusing.snapshot()[0].id; a != ds[0].Event.ID || b != a {
		t.Errorf("ids %s and %s, want %s", a, b, ds[0].Event.ID)
	}
}

// TestTwoReplicasPostgres: two publishers on one PostgreSQL database,
// each with its own connections, deliver every event exactly once to a
// healthy endpoint.
func TestTwoReplicasPostgres(t *testing.T) {
	url := openPG(t)
	dbA, dbB := openDB(t, url), openDB(t, url)
	rc := newReceiver(t)
	cfg := fastConfig(rc.endpoint(t))
	cfg.Concurrency = 3
	a := start(t, cfg, dbA)
	b := start(t, cfg, dbB)
	svc := newAdmin(t, dbA)
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := svc.Create(asCI(t), admin.CreateRequest{Tenant: fmt.Sprint("tenant-", i%7)}); err != nil {
				t.Error(err)
			}
			if i%3 == 0 {
				a.Notify()
				b.Notify()
			}
		})
	}
	wg.Wait()
	eventually(t, "every event delivered", func() bool { return len(rc.snapshot()) >= n })
	settle(t, a.Publisher, b.Publisher)
	if got := len(rc.snapshot()); got != n {
		t.Errorf("%d deliveries for %d events", got, n)
	}
	for id, c := range rc.count {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
	if sa, sb := a.Stats().Delivered, b.Stats().Delivered; sa == 0 || sb == 0 {
		t.Logf("one replica delivered everything (a %d, b %d): allowed, but the race was not exercised", sa, sb)
	}
}

// TestRateLimitedAcrossReplicas: two replicas noticing the same key's
// 429s in the same window add one event; the next window adds another.
func TestRateLimitedAcrossReplicas(t *testing.T) {
	url := openPG(t)
	dbA, dbB := openDB(t, url), openDB(t, url)
	rc := newReceiver(t)
	cfg := fastConfig(rc.endpoint(t, store.EventKeyRateLimited))
	a, b := start(t, cfg, dbA), start(t, cfg, dbB)
	rec := keys.Record{ID: "key_abc", Tenant: "acme", Prefix: "sk_live_abcdefg", Env: keys.EnvLive, Hash: keys.Hash{1, 2, 3}}
	w := limits.Window{Limit: 5, Period: time.Minute}
	at := time.Date(2026, 5, 1, 10, 0, 30, 0, time.UTC)
	for i := range 20 {
		a.RateLimited(rec, w, at.Add(time.Duration(i)*time.Second))
		b.RateLimited(rec, w, at.Add(time.Duration(i)*time.Second))
	}
	a.RateLimited(rec, w, at.Add(time.Minute)) // the next window
	eventually(t, "two notices", func() bool { return len(rc.snapshot()) == 2 })
	settle(t, a.Publisher, b.Publisher)
	if got := len(rc.snapshot()); got != 2 {
		t.Fatalf("%d notices, want 2", got)
	}
	if raw := string(rc.snapshot()[0].raw); strings.Contains(raw, rec.Hash.String()) {
		t.Errorf("a notice carries the hash: %s", raw)
	}
}

// TestRateLimitedNeverBlocks: with no writer running the queue fills and
// further notices are dropped and counted, never waited for; a dropped
// key is not remembered, so its next 429 tries again.
func TestRateLimitedNeverBlocks(t *testing.T) {
	rc := newReceiver(t)
	p, err := New(fastConfig(rc.endpoint(t)), openSQLite(t), testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	w := limits.Window{Limit: 1, Period: time.Hour}
	now := time.Now()
	const n = noticeQueue + 100
	for i := range n {
		p.RateLimited(keys.Record{ID: fmt.Sprint("key_", i), Tenant: "acme"}, w, now)
	}
	if got := p.Stats().NoticesDropped; got != 100 {
		t.Errorf("dropped %d, want 100", got)
	}
	<-p.notices.queue // room for one
	p.RateLimited(keys.Record{ID: fmt.Sprint("key_", n-1), Tenant: "acme"}, w, now)
	if got := p.Stats().NoticesDropped; got != 100 {
		t.Errorf("a dropped key's next 429 was not queued: dropped %d", got)
	}
}

// TestNoEndpoints: without endpoints events are dispatched to none and
// nothing is sent; no notice is even noticed.
func TestNoEndpoints(t *testing.T) {
	db := openSQLite(t)
	pub := start(t, fastConfig(), db)
	if pub.notices != nil || pub.expiring {
		t.Error("notices kept with no endpoint to send them to")
	}
	pub.RateLimited(keys.Record{ID: "key_x", Tenant: "acme"}, limits.Window{Limit: 1, Period: time.Minute}, time.Now())
	if _, err := newAdmin(t, db).Create(asCI(t), admin.CreateRequest{Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	pub.Notify()
	eventually(t, "dispatched to none", func() bool {
		oldest, err := db.OldestUndelivered(t.Context())
		return err == nil && oldest.IsZero()
	})
	if ds, err := db.Deliveries(t.Context(), store.DeliveryFilter{}); err != nil || len(ds) != 0 {
		t.Errorf("deliveries %+v, %v", ds, err)
	}
}

// TestFilters: an endpoint gets only the types and tenants it asks for.
func TestFilters(t *testing.T) {
	db := openSQLite(t)
	all, revokes, acme := newReceiver(t), newReceiver(t), newReceiver(t)
	acmeEp := acme.endpoint(t)
	acmeEp.Tenants = []string{"acme"}
	start(t, fastConfig(all.endpoint(t), revokes.endpoint(t, store.ActionKeyRevoked), acmeEp), db)
	svc := newAdmin(t, db)
	for _, tenant := range []string{"acme", "globex"} {
		c, err := svc.Create(asCI(t), admin.CreateRequest{Tenant: tenant})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Revoke(asCI(t), c.Record.ID); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "all delivered", func() bool {
		return len(all.snapshot()) == 4 && len(revokes.snapshot()) == 2 && len(acme.snapshot()) == 2
	})
	for _, tk := range revokes.snapshot() {
		if tk.typ != store.ActionKeyRevoked {
			t.Errorf("revokes got %s", tk.typ)
		}
	}
	for _, tk := range acme.snapshot() {
		if tk.body["data"].(map[string]any)["tenant"] != "acme" {
			t.Errorf("acme got %v", tk.body)
		}
	}
}

// TestSendTest: keygate webhooks test's event reaches the receiver
// signed; a refusal is an error that says the status.
func TestSendTest(t *testing.T) {
	rc := newReceiver(t)
	actor := store.Actor{Type: store.ActorCLI, Name: "ops"}
	code, err := SendTest(t.Context(), rc.endpoint(t), actor, nil, 5*time.Second)
	if err != nil || code != 204 {
		t.Fatalf("SendTest = %d, %v", code, err)
	}
	if got := rc.snapshot(); len(got) != 1 || got[0].typ != TypeTest {
		t.Fatalf("received %+v", got)
	}
	rc.down.Store(503)
	if code, err := SendTest(t.Context(), rc.endpoint(t), actor, nil, 5*time.Second); code != 503 || err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("refused: %d, %v", code, err)
	}
}
