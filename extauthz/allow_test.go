package extauthz_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
)

func okResponse(t *testing.T, resp *authv3.CheckResponse) *authv3.OkHttpResponse {
	t.Helper()
	ok := resp.GetOkResponse()
	if ok == nil || resp.GetStatus().GetCode() != 0 {
		t.Fatalf("want allow, got %v", resp)
	}
	for _, o := range append(ok.GetHeaders(), ok.GetResponseHeadersToAdd()...) {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: append action %v; client copies must be overwritten", o.GetHeader().GetKey(), o.GetAppendAction())
		}
	}
	return ok
}

func TestAllowed(t *testing.T) {
	f := newFixture(t)
	rec, err := f.env.cache.Lookup(context.Background(), keys.NewHasher(nil).Sum(f.live))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                string
		req                 *authv3.CheckRequest
		wantOrg, wantScopes string
		wantStrip           []string
	}{
		{"own tenant, headers map", req("GET", "/api/v1/patients/p1?x=1", bearer(f.live), nil), "acme", "patients:read,patients:write,forms:*", nil},
		{"case-insensitive scheme", req("GET", "/api/v1/patients", map[string]string{"authorization": "bEaReR " + f.live}, nil), "acme", "patients:read,patients:write,forms:*", nil},
		{"header_map with raw_value", rawReq("GET", "/api/v1/patients", [][2]string{{"authorization", "Bearer " + f.live}}), "acme", "patients:read,patients:write,forms:*", nil},
		{"org is own tenant", req("POST", "/api/v1/patients", with(bearer(f.live), "x-organization-id", "acme"), nil), "acme", "patients:read,patients:write,forms:*", nil},
		{"granted org: scopes intersected", req("GET", "/api/v1/patients", with(bearer(f.live), "x-organization-id", "clinic-1"), nil), "clinic-1", "patients:read", nil},
		{"context_extensions need no rule", req("GET", "/not/routed", bearer(f.live), map[string]string{"keygate.scopes": "forms:read"}), "acme", "patients:read,patients:write,forms:*", nil},
		{"request id from the proxy", req("GET", "/api/v1/patients", with(bearer(f.live), "x-request-id", "req-0123"), nil), "acme", "patients:read,patients:write,forms:*", nil},
		{"spoofed keygate headers", req("GET", "/api/v1/forms/f1", with(bearer(f.live), "x-keygate-tenant", "evil", "x-keygate-admin", "true", "x-keygate-key-id", "key_evil"), nil), "acme", "patients:read,patients:write,forms:*", []string{"x-keygate-admin"}},
	}
	for _, via := range f.codecs() {
		for _, c := range cases {
			t.Run(via.name+"/"+c.name, func(t *testing.T) {
				resp := via.check(c.req)
				ok := okResponse(t, resp)
				h := headerMap(ok.GetHeaders())
				want := map[string]string{
					"x-keygate-key-id": rec.ID, "x-keygate-tenant": "acme", "x-keygate-org": c.wantOrg,
					"x-keygate-env": "live", "x-keygate-scopes": c.wantScopes, "x-keygate-plan": "live",
				}
				for k, v := range want {
					if h[k] != v {
						t.Errorf("%s = %q, want %q", k, h[k], v)
					}
				}
				rm := ok.GetHeadersToRemove()
				if !slices.Contains(rm, "authorization") {
					t.Errorf("authorization not removed: %v", rm)
				}
				for _, s := range c.wantStrip {
					if !slices.Contains(rm, s) {
						t.Errorf("client header %s not removed: %v", s, rm)
					}
				}
				rh := headerMap(ok.GetResponseHeadersToAdd())
				if rh["ratelimit-policy"] != `"1h";q=10000;w=3600` || !strings.HasPrefix(rh["ratelimit"], `"1h";r=`) || rh["x-ratelimit-limit"] != "10000" {
					t.Errorf("rate-limit headers: %v", rh)
				}
				md := resp.GetDynamicMetadata().GetFields()
				if md["key_id"].GetStringValue() != rec.ID || md["tenant"].GetStringValue() != "acme" || md["org"].GetStringValue() != c.wantOrg ||
					md["env"].GetStringValue() != "live" || md["code"].GetStringValue() != "ok" || md["request_id"].GetStringValue() == "" {
					t.Errorf("dynamic metadata: %v", md)
				}
				if id := c.req.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-request-id"]; id != "" && md["request_id"].GetStringValue() != id {
					t.Errorf("request_id %q, want the proxy's %q", md["request_id"].GetStringValue(), id)
				}
			})
		}
	}
	if !strings.Contains(f.logs.String(), `"decision":"allow"`) || !strings.Contains(f.logs.String(), rec.Prefix) {
		t.Error("allowed decisions must be logged with the key's display prefix")
	}
}

// TestRevocationReachesCache: a revoke through the admin service stops the
// key within the poll interval, without a restart.
func TestRevocationReachesCache(t *testing.T) {
	f := newFixture(t)
	c := f.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
	r := req("GET", "/api/v1/patients", bearer(c.Key), nil)
	okResponse(t, f.check(r))
	if _, err := f.admin.Revoke(context.Background(), c.Record.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for f.check(r).GetDeniedResponse() == nil {
		if time.Since(start) > 3*time.Second {
			t.Fatal("revoked key still allowed after 3s (poll interval 50ms)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revocation took effect after %v", time.Since(start))
	wantDeniedCode(t, f.check(r), "api_key_revoked")
}

// TestGrantChangesApply: grants set and revoked take effect without a restart.
func TestGrantChangesApply(t *testing.T) {
	f := newFixture(t)
	r := req("GET", "/api/v1/patients", with(bearer(f.live), "x-organization-id", "clinic-2"), nil)
	wantDeniedCode(t, f.check(r), "organization_forbidden")
	if _, err := f.admin.SetGrant(context.Background(), "acme", "clinic-2", []string{"patients:*"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.check(r).GetOkResponse() != nil })
	if _, err := f.admin.RevokeGrant(context.Background(), "acme", "clinic-2"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return f.check(r).GetDeniedResponse() != nil })
	wantDeniedCode(t, f.check(r), "organization_forbidden")
}

func wantDeniedCode(t *testing.T, resp *authv3.CheckResponse, code string) {
	t.Helper()
	if d := resp.GetDeniedResponse(); d == nil || !strings.Contains(d.GetBody(), `"code":"`+code+`"`) {
		t.Fatalf("want %s, got %v", code, resp)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 3s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
