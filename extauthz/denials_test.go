package extauthz_test

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
)

func boolp(b bool) *bool { return &b }

var testRoutes = []policy.Route{
	{Methods: []string{"GET"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:read"}},
	{Methods: []string{"POST", "PUT", "PATCH"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:write"}, OrgRequired: boolp(true)},
	{Methods: []string{"GET"}, Path: "/api/v1/forms/*", Scopes: []string{"forms:read"}},
}

// fixture creates the keys and grants every denial row needs.
type fixture struct {
	*env
	live, formsOnly, revoked, expired, tiny, unknown string
}

func newFixture(t *testing.T) *fixture {
	e := newEnv(t, envOpts{routes: testRoutes})
	ctx := context.Background()
	f := &fixture{env: e}
	f.live = e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read", "patients:write", "forms:*"}}).Key
	f.formsOnly = e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvTest, Scopes: []string{"forms:read"}}).Key
	rv := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
	if _, err := e.admin.Revoke(ctx, rv.Record.ID); err != nil {
		t.Fatal(err)
	}
	f.revoked = rv.Key
	ex := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
	if _, err := e.db.SetExpiry(ctx, ex.Record.ID, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.expired = ex.Key
	f.tiny = e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Plan: "tiny", Scopes: []string{"patients:read"}}).Key
	f.unknown, _ = keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	if _, err := e.admin.SetGrant(ctx, "acme", "clinic-1", []string{"patients:read"}); err != nil {
		t.Fatal(err)
	}
	// Let the cache see the revocation, expiry and grant through the feed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := e.cache.Grant("acme", "clinic-1"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("grant never reached the cache")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return f
}

func TestDenials(t *testing.T) {
	f := newFixture(t)
	last := "a"
	if strings.HasSuffix(f.live, "a") {
		last = "b"
	}
	badChecksum := f.live[:len(f.live)-1] + last
	cases := []struct {
		name     string
		req      *authv3.CheckRequest
		status   int
		code     string
		grpc     codes.Code
		inMsg    string
		tokenErr bool // WWW-Authenticate carries error="invalid_token"
	}{
		{"no authorization", req("GET", "/api/v1/patients", nil, nil), 401, "missing_api_key", codes.Unauthenticated, "", false},
		{"basic scheme", req("GET", "/api/v1/patients", map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, nil), 401, "malformed_authorization", codes.Unauthenticated, "", false},
		{"bearer without token", req("GET", "/api/v1/patients", map[string]string{"authorization": "Bearer"}, nil), 401, "malformed_authorization", codes.Unauthenticated, "", false},
		{"empty authorization", req("GET", "/api/v1/patients", map[string]string{"authorization": ""}, nil), 401, "malformed_authorization", codes.Unauthenticated, "", false},
		{"token with space", req("GET", "/api/v1/patients", map[string]string{"authorization": "Bearer " + f.live + " x"}, nil), 401, "malformed_authorization", codes.Unauthenticated, "", false},
		{"two authorization values joined", req("GET", "/api/v1/patients", map[string]string{"authorization": "Bearer " + f.live + ",Bearer " + f.live}, nil), 401, "malformed_authorization", codes.Unauthenticated, "", false},
		{"two authorization entries in header_map", rawReq("GET", "/api/v1/patients", [][2]string{{"authorization", "Bearer " + f.live}, {"authorization", "Bearer " + f.live}}), 401, "malformed_authorization", codes.Unauthenticated, "", false},
		{"unknown prefix", req("GET", "/api/v1/patients", bearer("pk_live_"+f.live[8:]), nil), 401, "invalid_api_key", codes.Unauthenticated, "", true},
		{"bad checksum", req("GET", "/api/v1/patients", bearer(badChecksum), nil), 401, "invalid_api_key", codes.Unauthenticated, "", true},
		{"unknown key", req("GET", "/api/v1/patients", bearer(f.unknown), nil), 401, "invalid_api_key", codes.Unauthenticated, "", true},
		{"non-utf8 key", rawReq("GET", "/api/v1/patients", [][2]string{{"authorization", "Bearer sk_live_\xff\xfe"}}), 401, "invalid_api_key", codes.Unauthenticated, "", true},
		{"huge key", req("GET", "/api/v1/patients", bearer("sk_live_"+strings.Repeat("a", 64<<10)), nil), 401, "invalid_api_key", codes.Unauthenticated, "", true},
		{"expired", req("GET", "/api/v1/patients", bearer(f.expired), nil), 401, "api_key_expired", codes.Unauthenticated, "", true},
		{"revoked", req("GET", "/api/v1/patients", bearer(f.revoked), nil), 401, "api_key_revoked", codes.Unauthenticated, "", true},
		{"org required and missing", req("POST", "/api/v1/patients", bearer(f.live), nil), 400, "missing_organization", codes.InvalidArgument, "", false},
		{"org not a valid id", req("GET", "/api/v1/patients", with(bearer(f.live), "x-organization-id", "bad org!"), nil), 400, "invalid_organization", codes.InvalidArgument, "", false},
		{"org non-utf8", rawReq("GET", "/api/v1/patients", [][2]string{{"authorization", "Bearer " + f.live}, {"x-organization-id", "org\xff"}}), 400, "invalid_organization", codes.InvalidArgument, "", false},
		{"org huge", req("GET", "/api/v1/patients", with(bearer(f.live), "x-organization-id", strings.Repeat("a", 10000)), nil), 400, "invalid_organization", codes.InvalidArgument, "", false},
		{"two org values joined", req("GET", "/api/v1/patients", with(bearer(f.live), "x-organization-id", "clinic-1,acme"), nil), 400, "invalid_organization", codes.InvalidArgument, "", false},
		{"two org entries in header_map", rawReq("GET", "/api/v1/patients", [][2]string{{"authorization", "Bearer " + f.live}, {"x-organization-id", "acme"}, {"x-organization-id", "acme"}}), 400, "invalid_organization", codes.InvalidArgument, "", false},
		{"org without grant", req("GET", "/api/v1/patients", with(bearer(f.live), "x-organization-id", "other-clinic"), nil), 403, "organization_forbidden", codes.PermissionDenied, "", false},
		{"scope missing", req("GET", "/api/v1/patients/p1", bearer(f.formsOnly), nil), 403, "insufficient_scope", codes.PermissionDenied, "Insufficient scope. Required: patients:read", false},
		{"scope missing under grant", req("POST", "/api/v1/patients", with(bearer(f.live), "x-organization-id", "clinic-1"), nil), 403, "insufficient_scope", codes.PermissionDenied, "Required: patients:write", false},
		{"scope from context_extensions", req("GET", "/elsewhere", bearer(f.formsOnly), map[string]string{"keygate.scopes": "billing:read"}), 403, "insufficient_scope", codes.PermissionDenied, "Required: billing:read", false},
		{"no route", req("GET", "/api/v2/unknown", bearer(f.live), nil), 404, "route_not_found", codes.NotFound, "", false},
		{"method not routed", req("DELETE", "/api/v1/patients/p1", bearer(f.live), nil), 404, "route_not_found", codes.NotFound, "", false},
	}
	for _, via := range f.codecs() {
		for _, c := range cases {
			t.Run(via.name+"/"+c.name, func(t *testing.T) {
				b, h := wantDenied(t, via.check(c.req), c.status, c.code, c.grpc)
				if c.inMsg != "" && !strings.Contains(b.Error.Message, c.inMsg) {
					t.Errorf("message %q does not contain %q", b.Error.Message, c.inMsg)
				}
				if got := strings.Contains(h["www-authenticate"], `error="invalid_token"`); got != c.tokenErr {
					t.Errorf("WWW-Authenticate %q: invalid_token=%v, want %v", h["www-authenticate"], got, c.tokenErr)
				}
			})
		}
	}
	// No key, nor anything but its display prefix, may reach the logs.
	logs := f.logs.String()
	for _, k := range []string{f.live, f.formsOnly, f.revoked, f.expired, f.tiny, f.unknown} {
		if strings.Contains(logs, k) || strings.Contains(logs, k[8:]) {
			t.Fatalf("a key appears in the logs")
		}
	}
}

func TestRateLimited(t *testing.T) {
	f := newFixture(t)
	r := req("GET", "/api/v1/patients", bearer(f.tiny), nil)
	for i := range 2 {
		if f.check(r).GetOkResponse() == nil {
			t.Fatalf("request %d of a 2/h plan denied", i+1)
		}
	}
	_, h := wantDenied(t, f.check(r), 429, "rate_limited", codes.ResourceExhausted)
	ra, err := strconv.Atoi(h["retry-after"])
	if err != nil || ra < 1 || ra > 3600 {
		t.Errorf("Retry-After %q, want whole seconds in [1, 3600]", h["retry-after"])
	}
	if h["x-ratelimit-limit"] != "2" || h["x-ratelimit-remaining"] != "0" || h["ratelimit-policy"] == "" || h["ratelimit"] == "" {
		t.Errorf("429 without rate-limit headers: %v", h)
	}
}

func TestRequestIDEchoed(t *testing.T) {
	f := newFixture(t)
	b, _ := wantDenied(t, f.check(req("GET", "/x", map[string]string{"x-request-id": "req-123"}, nil)), 401, "missing_api_key", codes.Unauthenticated)
	if b.Error.RequestID != "req-123" {
		t.Errorf("request_id %q, want the x-request-id", b.Error.RequestID)
	}
	if !strings.Contains(f.logs.String(), `"request_id":"req-123"`) {
		t.Error("the decision's log line lacks the request_id")
	}
	// A hostile request id is replaced, not echoed.
	b, _ = wantDenied(t, f.check(req("GET", "/x", map[string]string{"x-request-id": "a\"b\n"}, nil)), 401, "missing_api_key", codes.Unauthenticated)
	if b.Error.RequestID == "" || strings.ContainsAny(b.Error.RequestID, "\"\n") {
		t.Errorf("request_id %q", b.Error.RequestID)
	}
}

func TestUnavailableWhenDatabaseDown(t *testing.T) {
	f := newFixture(t)
	cached := req("GET", "/api/v1/patients", bearer(f.live), nil)
	if f.check(cached).GetOkResponse() == nil {
		t.Fatal("cached key denied")
	}
	f.db.Close() // the database is gone
	if f.check(cached).GetOkResponse() == nil {
		t.Fatal("a cached key must keep working while the database is down")
	}
	_, h := wantDenied(t, f.check(req("GET", "/api/v1/patients", bearer(f.unknown), nil)), 503, "unavailable", codes.Unavailable)
	if h["retry-after"] == "" {
		t.Error("503 without Retry-After")
	}
}

// TestRedisDown: with Redis unreachable, each on_redis_error mode decides
// as configured, and quickly.
func TestRedisDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "redis://" + l.Addr().String() + "/0"
	l.Close() // nothing listens there now
	for _, c := range []struct {
		mode limits.Mode
		code string
	}{{limits.ModeClosed, "unavailable"}, {limits.ModeOpen, ""}, {limits.ModeLocal, ""}} {
		t.Run(string(c.mode), func(t *testing.T) {
			e := newEnv(t, envOpts{routes: testRoutes, redisURL: dead, onRedisErr: c.mode})
			k := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}}).Key
			start := time.Now()
			resp := e.check(req("GET", "/api/v1/patients", bearer(k), nil))
			if d := time.Since(start); d > time.Second {
				t.Errorf("Check took %v with Redis down", d)
			}
			if c.code == "" {
				okResponse(t, resp)
				return
			}
			_, h := wantDenied(t, resp, 503, c.code, codes.Unavailable)
			if h["retry-after"] == "" {
				t.Error("503 without Retry-After")
			}
		})
	}
}
