package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// The audit tests join the shared suite (runSuite): each runs on SQLite and
// on the real PostgreSQL.

// testAuditEvents: one event per change, with the action, tenant, key,
// origin and details of that change, and never a hash; a refused change
// writes none.
func testAuditEvents(t *testing.T, db DB) {
	ctx := WithOrigin(t.Context(), Origin{Actor: Actor{Type: ActorAdminToken, Name: "ci"}, SourceIP: "203.0.113.9", RequestID: "req-1"})
	a := newRecord("key_a", "acme")
	if _, err := db.InsertKey(ctx, a); err != nil {
		t.Fatal(err)
	}
	imp := newRecord("key_imp", "acme")
	imp.Imported = true
	if _, err := db.InsertKey(ctx, imp); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SetExpiry(ctx, "key_a", time.Now().Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	next := newRecord("key_b", "acme")
	if _, _, err := db.RollKey(ctx, "key_a", next, time.Now(), time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeKey(ctx, "key_b", time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Refused: no event.
	if _, err := db.RevokeKey(ctx, "key_b", time.Time{}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := db.RevokeKey(ctx, "key_nope", time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := db.SetGrant(ctx, keys.Grant{Tenant: "acme", Org: "clinic-1", Scopes: []string{"patients:read"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.RevokeGrant(ctx, "acme", "clinic-1", time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Without an origin in the context, the actor is Keygate itself.
	if _, err := db.InsertKey(t.Context(), newRecord("key_sys", "other")); err != nil {
		t.Fatal(err)
	}

	evs, err := db.AuditEvents(t.Context(), AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ action, tenant, key string }{
		{ActionKeyCreated, "other", "key_sys"},
		{ActionGrantRevoked, "acme", ""},
		{ActionGrantSet, "acme", ""},
		{ActionKeyRevoked, "acme", "key_b"},
		{ActionKeyRolled, "acme", "key_a"},
		{ActionKeyExpiryChanged, "acme", "key_a"},
		{ActionKeyImported, "acme", "key_imp"},
		{ActionKeyCreated, "acme", "key_a"},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, w := range want {
		e := evs[i]
		if e.Action != w.action || e.Tenant != w.tenant || e.KeyID != w.key {
			t.Errorf("event %d = %s %s %s, want %s %s %s", i, e.Action, e.Tenant, e.KeyID, w.action, w.tenant, w.key)
		}
		if !ValidEventID(e.ID) || e.At.IsZero() {
			t.Errorf("event %d: id %q at %v", i, e.ID, e.At)
		}
		wantActor := Actor{Type: ActorAdminToken, Name: "ci"}
		if w.key == "key_sys" {
			wantActor = Actor{Type: ActorSystem, Name: "keygate"}
		} else if e.SourceIP != "203.0.113.9" || e.RequestID != "req-1" {
			t.Errorf("event %d: source %q request %q", i, e.SourceIP, e.RequestID)
		}
		if e.Actor != wantActor {
			t.Errorf("event %d: actor %+v, want %+v", i, e.Actor, wantActor)
		}
		for _, r := range []keys.Record{a, imp, next} {
			if strings.Contains(fmt.Sprint(e.Details), r.Hash.String()) {
				t.Errorf("event %d holds a hash: %v", i, e.Details)
			}
		}
	}
	if d := evs[4].Details; d["new_key_id"] != "key_b" || d["grace"] == nil {
		t.Errorf("roll details: %v", d)
	}
	if d := evs[2].Details; d["org"] != "clinic-1" || fmt.Sprint(d["scopes"]) != "[patients:read]" {
		t.Errorf("grant details: %v", d)
	}
	if d := evs[5].Details; d["expires_at"] == nil || d["previous_expires_at"] != nil {
		t.Errorf("expiry details: %v", d)
	}
}

// writer is the one write path both databases share (keyDB.write).
type writer interface {
	write(ctx context.Context, fn func(ctx context.Context, tx *writeTx) error) error
}

// testAuditAtomic: a change and its event commit together or not at all.
func testAuditAtomic(t *testing.T, db DB) {
	ctx := t.Context()
	w, ok := db.(writer)
	if !ok {
		t.Fatalf("%T does not write through keyDB", db)
	}
	// The event is written, then the transaction fails: neither stays.
	r, _ := prepareKey(newRecord("key_gone", "acme"))
	boom := errors.New("boom after the event")
	err := w.write(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := tx.insertKey(ctx, &r); err != nil {
			return err
		}
		if err := tx.audit(ctx, ActionKeyCreated, r.Tenant, r.ID, nil); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("write: %v", err)
	}
	// The event cannot be written: the change does not stay either.
	r2, _ := prepareKey(newRecord("key_gone2", "acme"))
	err = w.write(ctx, func(ctx context.Context, tx *writeTx) error {
		if err := tx.insertKey(ctx, &r2); err != nil {
			return err
		}
		return tx.audit(ctx, ActionKeyCreated, r2.Tenant, r2.ID, map[string]any{"bad": func() {}})
	})
	if err == nil {
		t.Fatal("an event whose details cannot be written was accepted")
	}
	for _, id := range []string{"key_gone", "key_gone2"} {
		if _, err := db.KeyByID(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after a failed write: %v", id, err)
		}
	}
	if evs, err := db.AuditEvents(ctx, AuditFilter{}); err != nil || len(evs) != 0 {
		t.Fatalf("events after failed writes: %v %+v", err, evs)
	}
}

// testAuditQuery: filters, newest first, the cursor and pruning.
func testAuditQuery(t *testing.T, db DB) {
	ctx := t.Context()
	for i := range 25 {
		tenant := []string{"acme", "beta"}[i%2]
		if _, err := db.InsertKey(ctx, newRecord(fmt.Sprintf("key_%02d", i), tenant)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.RevokeKey(ctx, "key_04", time.Time{}); err != nil {
		t.Fatal(err)
	}
	var all []AuditEvent
	after := ""
	for page := 0; ; page++ {
		evs, err := db.AuditEvents(ctx, AuditFilter{Limit: 10, After: after})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, evs...)
		if len(evs) < 10 {
			break
		}
		after = evs[len(evs)-1].ID
	}
	if len(all) != 26 || all[0].Action != ActionKeyRevoked || all[25].KeyID != "key_00" {
		t.Fatalf("paged %d events, first %+v", len(all), all[0])
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID >= all[i-1].ID {
			t.Fatalf("not newest first at %d: %s then %s", i, all[i-1].ID, all[i].ID)
		}
	}
	check := func(name string, f AuditFilter, n int) {
		t.Helper()
		evs, err := db.AuditEvents(ctx, f)
		if err != nil || len(evs) != n {
			t.Errorf("%s: %d events (%v), want %d", name, len(evs), err, n)
		}
	}
	check("tenant", AuditFilter{Tenant: "beta"}, 12)
	check("key", AuditFilter{KeyID: "key_04"}, 2)
	check("action", AuditFilter{Action: ActionKeyRevoked}, 1)
	check("tenant and action", AuditFilter{Tenant: "beta", Action: ActionKeyRevoked}, 0)
	check("since now", AuditFilter{Since: time.Now().Add(time.Minute)}, 0)
	check("since an hour ago", AuditFilter{Since: time.Now().Add(-time.Hour)}, 26)

	if n, err := db.PruneAudit(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("prune before an hour ago: %d %v", n, err)
	}
	if n, err := db.PruneAudit(ctx, time.Now().Add(time.Second)); err != nil || n != 26 {
		t.Fatalf("prune all: %d %v", n, err)
	}
	check("after pruning", AuditFilter{}, 0)
}

func TestEventIDs(t *testing.T) {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a, err := newEventID(at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := newEventID(at.Add(time.Microsecond))
	if !ValidEventID(a) || !ValidEventID(b) || a >= b || a < eventIDAt(at) || b < eventIDAt(at.Add(time.Microsecond)) {
		t.Fatalf("ids %s %s, horizon %s", a, b, eventIDAt(at))
	}
	for _, bad := range []string{"", "evt_", "evt_x", a + "0", strings.ToUpper(a), "key_" + a[4:], "evt_' OR 1=1 --"} {
		if ValidEventID(bad) {
			t.Errorf("ValidEventID(%q) = true", bad)
		}
	}
}
