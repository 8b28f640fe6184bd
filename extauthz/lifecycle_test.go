package extauthz_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
)

// TestRollWithGrace: after a roll both keys work; the old one tells its
// callers to switch (Deprecation, Sunset) and fails as api_key_expired once
// the grace ends; both spend one rate-limit bucket.
func TestRollWithGrace(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	old := f.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Plan: "tiny", Scopes: []string{"patients:read"}})
	const grace = 1500 * time.Millisecond
	prev, next, err := f.admin.Roll(ctx, old.Record.ID, grace)
	if err != nil {
		t.Fatal(err)
	}
	if next.Record.Lineage != old.Record.Lineage || next.Key == old.Key || prev.ReplacedBy != next.Record.ID {
		t.Fatalf("roll: lineage %s/%s, replaced_by %s", next.Record.Lineage, old.Record.Lineage, prev.ReplacedBy)
	}
	oldReq := req("GET", "/api/v1/patients", bearer(old.Key), nil)
	newReq := req("GET", "/api/v1/patients", bearer(next.Key), nil)
	// The cache learns of the roll through the feed; watch the cache, not
	// Check, so that waiting spends none of the tiny plan.
	waitFor(t, func() bool {
		rec, err := f.env.cache.Lookup(ctx, keys.NewHasher(nil).Sum(old.Key))
		return err == nil && !rec.RolledAt.IsZero()
	})
	oldH := headerMap(okResponse(t, f.check(oldReq)).GetResponseHeadersToAdd())
	rolled, _ := f.admin.Show(ctx, old.Record.ID)
	if want := "@" + strconv.FormatInt(rolled.RolledAt.Unix(), 10); oldH["deprecation"] != want {
		t.Errorf("Deprecation %q, want %q (RFC 9745)", oldH["deprecation"], want)
	}
	if sunset, err := http.ParseTime(oldH["sunset"]); err != nil || sunset.Unix() != rolled.ExpiresAt.Unix() {
		t.Errorf("Sunset %q, want the end of the grace %v as an HTTP date (RFC 8594): %v", oldH["sunset"], rolled.ExpiresAt, err)
	}
	newH := headerMap(okResponse(t, f.check(newReq)).GetResponseHeadersToAdd())
	if newH["deprecation"] != "" || newH["sunset"] != "" {
		t.Errorf("the new key must not be deprecated: %v", newH)
	}
	// The two requests above (one old, one new) exhaust the tiny 2/h plan
	// for the whole lineage: rolling does not double the quota.
	wantDeniedCode(t, f.check(oldReq), "rate_limited")
	wantDeniedCode(t, f.check(newReq), "rate_limited")

	time.Sleep(time.Until(rolled.ExpiresAt))
	wantDeniedCode(t, f.check(oldReq), "api_key_expired")
}

func TestExpiresIn(t *testing.T) {
	f := newFixture(t)
	c := f.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}, ExpiresIn: 700 * time.Millisecond})
	r := req("GET", "/api/v1/patients", bearer(c.Key), nil)
	okResponse(t, f.check(r))
	time.Sleep(time.Until(c.Record.ExpiresAt) + 10*time.Millisecond)
	wantDeniedCode(t, f.check(r), "api_key_expired")
}

// TestImportCashCatKey: a key issued by a system without checksums, known
// only by its SHA-256, works once imported.
func TestImportCashCatKey(t *testing.T) {
	f := newFixture(t)
	rnd, _ := keys.RandomString(32)
	cashcat := "cc_live_" + rnd
	sum := sha256.Sum256([]byte(cashcat))
	rec, err := f.admin.Import(context.Background(), admin.ImportRequest{
		SHA256: hex.EncodeToString(sum[:]), Prefix: "cc_live_", DisplayPrefix: cashcat[:15], Last4: cashcat[len(cashcat)-4:],
		Tenant: "acme", Name: "from CashCat", Scopes: []string{"patients:read"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Imported || rec.Env != keys.EnvLive || rec.Prefix != cashcat[:15] {
		t.Errorf("imported record %+v", rec)
	}
	h := headerMap(okResponse(t, f.check(req("GET", "/api/v1/patients", bearer(cashcat), nil))).GetHeaders())
	if h["x-keygate-key-id"] != rec.ID || h["x-keygate-env"] != "live" {
		t.Errorf("headers %v", h)
	}
	wantDeniedCode(t, f.check(req("GET", "/api/v1/patients", bearer("cc_live_"+strings.Repeat("x", 32)), nil)), "invalid_api_key")
	if _, err := f.admin.Import(context.Background(), admin.ImportRequest{SHA256: "abc", Prefix: "cc_live_", Tenant: "acme"}); err == nil {
		t.Error("a short hash was imported")
	}
}

// TestLastUsedWrittenInBatches: uses reach the database through the usage
// recorder's flush, one write per key, never the request itself.
func TestLastUsedWrittenInBatches(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
	before := time.Now()
	for range 5 {
		okResponse(t, f.check(req("GET", "/api/v1/patients", bearer(c.Key), nil)))
	}
	if rec, _ := f.admin.Show(ctx, c.Record.ID); !rec.LastUsedAt.IsZero() {
		t.Fatal("last_used_at written on the request path")
	}
	if err := f.usage.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.admin.Show(ctx, c.Record.ID)
	if rec.LastUsedAt.Before(before.Add(-time.Millisecond)) || rec.LastUsedAt.After(time.Now()) {
		t.Errorf("last_used_at %v, want between %v and now", rec.LastUsedAt, before)
	}
}
