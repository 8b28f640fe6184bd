package store

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
)

// Both join the shared suite (runSuite): each runs on SQLite and on the
// real PostgreSQL.

// testRestrictions: a key's allowed networks and metadata are stored
// normalised and read back the same by every read; a key without them
// reads back nil; bad ones are refused before anything is written.
func testRestrictions(t *testing.T, db DB) {
	ctx := t.Context()
	r := newRecord("key_net", "acme")
	r.AllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("10.0.0.0/8")}
	r.Metadata = map[string]string{"team": "billing", "owner": "jane"}
	got := must[keys.Record](t)(db.InsertKey(ctx, r))
	if want := "[10.0.0.0/8 2001:db8::/32]"; fmt.Sprint(got.AllowedCIDRs) != want {
		t.Fatalf("inserted AllowedCIDRs = %v, want %s", got.AllowedCIDRs, want)
	}
	byID := must[keys.Record](t)(db.KeyByID(ctx, r.ID))
	byHash := must[keys.Record](t)(db.KeyByHash(ctx, r.Hash))
	list := must[[]keys.Record](t)(db.ListKeys(ctx, ListFilter{Tenant: "acme"}))
	ch := must[Changes](t)(db.Changes(ctx, 0, 0))
	for name, read := range map[string]keys.Record{"KeyByID": byID, "KeyByHash": byHash, "ListKeys": list[0], "Changes": ch.Keys[0]} {
		if show(read) != show(got) {
			t.Errorf("%s\n%s\nwant\n%s", name, show(read), show(got))
		}
	}
	plain := must[keys.Record](t)(db.InsertKey(ctx, newRecord("key_plain", "acme")))
	if read := must[keys.Record](t)(db.KeyByID(ctx, plain.ID)); read.AllowedCIDRs != nil || read.Metadata != nil {
		t.Errorf("a key without networks or metadata reads back %v, %v; want nil, nil", read.AllowedCIDRs, read.Metadata)
	}
	bad := []struct {
		name string
		edit func(r *keys.Record)
		want string
	}{
		{"metadata key", func(r *keys.Record) { r.Metadata = map[string]string{"Team": "x"} }, `metadata: key "Team"`},
		{"metadata value", func(r *keys.Record) { r.Metadata = map[string]string{"team": "a\nb"} }, "printable ASCII"},
		{"too many networks", func(r *keys.Record) {
			for i := range keys.MaxCIDRs + 1 {
				r.AllowedCIDRs = append(r.AllowedCIDRs, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16))
			}
		}, "allowed_cidrs: 33 networks, at most 32"},
	}
	for _, tc := range bad {
		r := newRecord("key_bad", "acme")
		tc.edit(&r)
		if _, err := db.InsertKey(ctx, r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: InsertKey = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := db.KeyByID(ctx, "key_bad"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused key was stored: %v", err)
	}
}

// testUpdateKey: changing a key's networks or metadata bumps its version
// (the change feed carries it to every replica), writes key.updated with
// what changed in the same transaction, and leaves the other field alone;
// refused changes write nothing.
func testUpdateKey(t *testing.T, db DB) {
	ctx := WithOrigin(t.Context(), Origin{Actor: Actor{Type: ActorAdminToken, Name: "ci"}})
	r := newRecord("key_u", "acme")
	r.Metadata = map[string]string{"team": "billing"}
	r = must[keys.Record](t)(db.InsertKey(ctx, r))
	cidrs := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/48")}
	got := must[keys.Record](t)(db.UpdateKey(ctx, r.ID, KeyUpdate{AllowedCIDRs: &cidrs}))
	if got.Version <= r.Version || fmt.Sprint(got.AllowedCIDRs) != "[192.0.2.0/24 2001:db8::/48]" || got.Metadata["team"] != "billing" {
		t.Fatalf("after setting networks: %s", show(got))
	}
	ch := must[Changes](t)(db.Changes(ctx, r.Version, 0))
	if len(ch.Keys) != 1 || show(ch.Keys[0]) != show(got) {
		t.Fatalf("change feed after the update: %+v", ch.Keys)
	}
	// The outbox event (webhooks) carries the key as it now is.
	var sent *keys.Record
	for _, e := range undispatched(t, db) {
		if e.Type == ActionKeyUpdated {
			sent = e.Key
		}
	}
	if sent == nil || fmt.Sprint(sent.AllowedCIDRs, sent.Metadata) != fmt.Sprint(got.AllowedCIDRs, got.Metadata) {
		t.Fatalf("key.updated outbox subject: %+v", sent)
	}
	meta := map[string]string{"owner": "jane"}
	got = must[keys.Record](t)(db.UpdateKey(ctx, r.ID, KeyUpdate{Metadata: &meta}))
	if len(got.AllowedCIDRs) != 2 || len(got.Metadata) != 1 || got.Metadata["owner"] != "jane" {
		t.Fatalf("after replacing metadata: %s", show(got))
	}
	none, empty := []netip.Prefix{}, map[string]string{}
	got = must[keys.Record](t)(db.UpdateKey(ctx, r.ID, KeyUpdate{AllowedCIDRs: &none, Metadata: &empty}))
	if got.AllowedCIDRs != nil || got.Metadata != nil {
		t.Fatalf("after clearing: %s", show(got))
	}
	if stored := must[keys.Record](t)(db.KeyByID(ctx, r.ID)); show(stored) != show(got) {
		t.Fatalf("stored\n%s\nwant\n%s", show(stored), show(got))
	}

	// Refused: nothing written.
	badMeta := map[string]string{"Team": "x"}
	if _, err := db.UpdateKey(ctx, r.ID, KeyUpdate{Metadata: &badMeta}); err == nil || !strings.Contains(err.Error(), `metadata: key "Team"`) {
		t.Errorf("bad metadata: %v", err)
	}
	if _, err := db.UpdateKey(ctx, r.ID, KeyUpdate{}); err == nil {
		t.Error("an update of nothing was accepted")
	}
	if _, err := db.UpdateKey(ctx, "key_nope", KeyUpdate{Metadata: &meta}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown key: %v", err)
	}
	must[keys.Record](t)(db.RevokeKey(ctx, r.ID, time.Time{}))
	if _, err := db.UpdateKey(ctx, r.ID, KeyUpdate{Metadata: &meta}); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoked key: %v", err)
	}

	evs := must[[]AuditEvent](t)(db.AuditEvents(ctx, AuditFilter{KeyID: r.ID, Action: ActionKeyUpdated}))
	if len(evs) != 3 {
		t.Fatalf("%d key.updated events, want 3: %+v", len(evs), evs)
	}
	// Newest first.
	want := []map[string]any{
		{"allowed_cidrs": []any{}, "previous_allowed_cidrs": []any{"192.0.2.0/24", "2001:db8::/48"},
			"metadata": map[string]any{}, "previous_metadata": map[string]any{"owner": "jane"}},
		{"metadata": map[string]any{"owner": "jane"}, "previous_metadata": map[string]any{"team": "billing"}},
		{"allowed_cidrs": []any{"192.0.2.0/24", "2001:db8::/48"}, "previous_allowed_cidrs": []any{}},
	}
	for i, e := range evs {
		if e.Tenant != "acme" || e.Actor.Name != "ci" || fmt.Sprint(e.Details) != fmt.Sprint(want[i]) {
			t.Errorf("event %d: %s %s %+v details %v, want %v", i, e.Tenant, e.Action, e.Actor, e.Details, want[i])
		}
	}
}
