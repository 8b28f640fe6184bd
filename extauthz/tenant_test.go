package extauthz_test

import (
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
)

// TestTenantWindow: two keys of one tenant on a plan with a per-tenant
// window share it through Check; another tenant's key does not; the
// headers name the window and carry the tenant as its partition key.
func TestTenantWindow(t *testing.T) {
	e := newEnv(t, envOpts{routes: testRoutes, plans: map[string][]limits.Window{
		"test": {{Limit: 100, Period: time.Hour}}, "live": {{Limit: 100, Period: time.Hour}},
		"team": {{Limit: 10, Period: time.Hour}, {Limit: 3, Period: time.Hour, Per: limits.PerTenant}},
	}})
	mk := func(tenant string) string {
		return e.create(admin.CreateRequest{Tenant: tenant, Env: keys.EnvLive, Plan: "team", Scopes: []string{"patients:read"}}).Key
	}
	a1, a2, b1 := mk("acme"), mk("acme"), mk("globex")
	check := func(k string) *authv3.CheckResponse {
		return e.check(req("GET", "/api/v1/patients", bearer(k), nil))
	}
	rh := headerMap(okResponse(t, check(a1)).GetResponseHeadersToAdd())
	if want := `"1h";q=10;w=3600, "tenant-1h";q=3;w=3600;pk=:YWNtZQ==:`; rh["ratelimit-policy"] != want {
		t.Errorf("RateLimit-Policy %q, want %q", rh["ratelimit-policy"], want)
	}
	if !strings.Contains(rh["ratelimit"], `"tenant-1h";r=2;`) || !strings.HasSuffix(rh["ratelimit"], ";pk=:YWNtZQ==:") {
		t.Errorf("RateLimit %q", rh["ratelimit"])
	}
	okResponse(t, check(a2))
	okResponse(t, check(a1))
	for _, k := range []string{a1, a2} {
		_, h := wantDenied(t, e.check(req("GET", "/api/v1/patients", bearer(k), nil)), 429, "rate_limited", codes.ResourceExhausted)
		if !strings.Contains(h["ratelimit"], "tenant-1h") {
			t.Errorf("429's RateLimit %q does not name the tenant window", h["ratelimit"])
		}
	}
	okResponse(t, check(b1)) // another tenant's key
}
