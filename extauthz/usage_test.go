package extauthz_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// TestChecksCounted drives real Checks on both databases and reads back,
// per key and per tenant, exactly as many allowed, rate-limited and
// denied decisions as were made; Checks that identify no key, or a
// key of another tenant, count nowhere else.
func TestChecksCounted(t *testing.T) {
	for _, db := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(*testing.T) string { return "" }},
		{"postgres", func(t *testing.T) string { return testpg.NewSchema(t, testpg.SharedURL()) }},
	} {
		t.Run(db.name, func(t *testing.T) {
			var revoked admin.Created
			e := newEnv(t, envOpts{routes: testRoutes, dbURL: db.url(t), seed: func(svc *admin.Service) {
				var err error
				if revoked, err = svc.Create(context.Background(), admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}}); err != nil {
					t.Fatal(err)
				}
				if _, err := svc.Revoke(context.Background(), revoked.Record.ID); err != nil {
					t.Fatal(err)
				}
			}})
			live := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
			tiny := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Plan: "tiny", Scopes: []string{"patients:read"}})
			other := e.create(admin.CreateRequest{Tenant: "globex", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
			unknown, _ := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})

			before := time.Now()
			for range 7 {
				okResponse(t, e.check(req("GET", "/api/v1/patients", bearer(live.Key), nil)))
			}
			for range 2 {
				wantDeniedCode(t, e.check(req("GET", "/api/v1/forms/f1", bearer(live.Key), nil)), "insufficient_scope")
			}
			wantDeniedCode(t, e.check(req("GET", "/nowhere", bearer(live.Key), nil)), "route_not_found")
			for range 2 {
				okResponse(t, e.check(req("GET", "/api/v1/patients", bearer(tiny.Key), nil)))
			}
			for range 3 {
				wantDeniedCode(t, e.check(req("GET", "/api/v1/patients", bearer(tiny.Key), nil)), "rate_limited")
			}
			for range 4 {
				wantDeniedCode(t, e.check(req("GET", "/api/v1/patients", bearer(revoked.Key), nil)), "api_key_revoked")
			}
			okResponse(t, e.check(req("GET", "/api/v1/patients", bearer(other.Key), nil)))
			// No key identified: counted nowhere.
			wantDeniedCode(t, e.check(req("GET", "/api/v1/patients", bearer(unknown), nil)), "invalid_api_key")
			wantDeniedCode(t, e.check(req("GET", "/api/v1/patients", nil, nil)), "missing_api_key")
			after := time.Now()

			if err := e.usage.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name string
				f    store.UsageFilter
				want string
			}{
				{"live key", store.UsageFilter{KeyID: live.Record.ID}, "7/0/3"},
				{"tiny key", store.UsageFilter{KeyID: tiny.Record.ID}, "2/3/0"},
				{"revoked key", store.UsageFilter{KeyID: revoked.Record.ID}, "0/0/4"},
				{"acme", store.UsageFilter{Tenant: "acme"}, "9/3/7"},
				{"globex", store.UsageFilter{Tenant: "globex"}, "1/0/0"},
			} {
				cs, err := e.db.Usage(context.Background(), tc.f)
				if err != nil {
					t.Fatal(err)
				}
				var a, r, d int64
				for _, c := range cs {
					if c.Start.Before(store.UsageHour(before)) || c.Start.After(store.UsageHour(after)) {
						t.Errorf("%s: bucket %v outside the hours of the checks", tc.name, c.Start)
					}
					a, r, d = a+c.Allowed, r+c.RateLimited, d+c.Denied
				}
				if got := fmt.Sprintf("%d/%d/%d", a, r, d); got != tc.want {
					t.Errorf("%s: allowed/rate_limited/denied %s, want %s", tc.name, got, tc.want)
				}
			}
			rec, err := e.db.KeyByID(context.Background(), revoked.Record.ID)
			if err != nil || !rec.LastUsedAt.IsZero() {
				t.Errorf("a revoked key's denials set last_used_at: %v (%v)", rec.LastUsedAt, err)
			}
		})
	}
}
