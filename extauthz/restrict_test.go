package extauthz_test

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
)

var netKey = admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"},
	AllowedCIDRs: []string{"10.0.0.0/8,2001:db8::/32"}}

// TestIPNotAllowed: a key with allowed networks works only from them, the
// client address read as for failures: Envoy's peer, or with trusted hops
// the X-Forwarded-For entry the outermost trusted proxy wrote; an entry a
// client wrote itself counts for nothing.
func TestIPNotAllowed(t *testing.T) {
	direct := newEnv(t, envOpts{routes: testRoutes})
	behind := newEnv(t, envOpts{routes: testRoutes, trustedHops: 1})
	cases := []struct {
		name    string
		e       *env
		peer    string
		xff     string // "": none
		allowed bool
	}{
		{"ipv4 inside", direct, "10.1.2.3", "", true},
		{"ipv4 outside", direct, "192.0.2.1", "", false},
		{"ipv6 inside", direct, "2001:db8::5", "", true},
		{"ipv6 outside", direct, "2001:db9::5", "", false},
		{"ipv4-mapped ipv6 inside", direct, "::ffff:10.9.8.7", "", true},
		{"spoofed X-Forwarded-For, no trusted hop", direct, "192.0.2.1", "10.1.2.3", false},
		{"spoofed X-Forwarded-For, inside peer", direct, "10.1.2.3", "192.0.2.1", true},
		{"trusted hop: client inside", behind, "10.0.0.1", "6.6.6.6, 10.2.3.4", true},
		{"trusted hop: client outside, proxy inside", behind, "10.0.0.1", "203.0.113.5", false},
		{"trusted hop: spoofed entry inside, client outside", behind, "10.0.0.1", "10.9.9.9, 203.0.113.5", false},
		{"trusted hop: ipv6 client", behind, "10.0.0.1", "2001:db8::9", true},
		{"trusted hop: garbage entry", behind, "10.0.0.1", "not-an-address", false},
	}
	keysOf := map[*env]string{direct: direct.create(netKey).Key, behind: behind.create(netKey).Key}
	open := map[*env]string{}
	for _, e := range []*env{direct, behind} {
		open[e] = e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}}).Key
	}
	for _, tc := range cases {
		for _, c := range tc.e.codecs() {
			t.Run(tc.name+"/"+c.name, func(t *testing.T) {
				h := bearer(keysOf[tc.e])
				if tc.xff != "" {
					h = with(h, "x-forwarded-for", tc.xff)
				}
				resp := c.check(fromAddr(req("GET", "/api/v1/patients", h, nil), tc.peer))
				if tc.allowed {
					okResponse(t, resp)
				} else {
					b, _ := wantDenied(t, resp, 403, "ip_not_allowed", codes.PermissionDenied)
					if b.Error.Type != "permission_error" || !strings.Contains(b.Error.Message, "not allowed from this IP address") {
						t.Errorf("body %+v", b.Error)
					}
				}
				// A key without networks works from anywhere.
				h["authorization"] = "Bearer " + open[tc.e]
				okResponse(t, c.check(fromAddr(req("GET", "/api/v1/patients", h, nil), tc.peer)))
			})
		}
	}
}

// TestIPNotAllowedReachesReplicas: narrowing a key's networks takes
// effect without a restart, as a revocation does.
func TestIPNotAllowedReachesReplicas(t *testing.T) {
	e := newEnv(t, envOpts{routes: testRoutes})
	k := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
	from := func() *authv3.CheckResponse {
		return e.check(fromAddr(req("GET", "/api/v1/patients", bearer(k.Key), nil), "192.0.2.1"))
	}
	okResponse(t, from())
	nets := []string{"10.0.0.0/8"}
	if _, err := e.admin.Update(t.Context(), k.Record.ID, admin.UpdateRequest{AllowedCIDRs: &nets}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return from().GetDeniedResponse() != nil })
	wantDenied(t, from(), 403, "ip_not_allowed", codes.PermissionDenied)
}

// TestHTTPIPNotAllowed: the same in forward-auth mode, where the peer is
// the proxy's connection and X-Forwarded-For its header.
func TestHTTPIPNotAllowed(t *testing.T) {
	for _, hops := range []int{0, 1} {
		h := newHTTPEnvWith(t, envOpts{routes: testRoutes, trustedHops: hops})
		k := h.create(netKey)
		cases := []struct {
			remote, xff string
			allowed     bool
		}{
			{"10.1.2.3:5000", "", true},
			{"192.0.2.1:5000", "", false},
			{"[2001:db8::1]:5000", "", true},
			{"[2001:db9::1]:5000", "", false},
			{"192.0.2.1:5000", "10.1.2.3", hops == 1},             // trusted only with a hop
			{"10.0.0.1:5000", "10.9.9.9, 203.0.113.5", hops == 0}, // a hop reads 203.0.113.5
			{"10.0.0.1:5000", "203.0.113.5, 2001:db8::77", true},  // inside either way
		}
		for _, tc := range cases {
			r := httptest.NewRequest("GET", "/authz/api/v1/patients", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("Authorization", "Bearer "+k.Key)
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			w := httptest.NewRecorder()
			h.mux.ServeHTTP(w, r)
			if tc.allowed {
				wantHTTPAllowed(t, w, k, "patients:read", "live")
			} else {
				wantHTTPDenied(t, w, 403, "ip_not_allowed")
			}
		}
	}
}

var metaHeaders = map[string]string{"team": "x-keygate-team", "owner": "x-owner"}

// TestMetadataHeaders: an allowed request carries the key's metadata in
// the configured headers, overwriting any copy the client sent; a
// configured header the key has no value for is removed from the request,
// whatever its case or encoding.
func TestMetadataHeaders(t *testing.T) {
	e := newEnv(t, envOpts{routes: testRoutes, metaHeaders: metaHeaders})
	both := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"},
		Metadata: map[string]string{"team": "billing", "owner": "jane", "unsent": "x"}})
	team := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"},
		Metadata: map[string]string{"team": "ops"}})
	none := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
	cases := []struct {
		name   string
		key    string
		set    map[string]string
		remove []string
	}{
		{"both", both.Key, map[string]string{"x-keygate-team": "billing", "x-owner": "jane"}, nil},
		{"team only", team.Key, map[string]string{"x-keygate-team": "ops"}, []string{"x-owner"}},
		{"none", none.Key, nil, []string{"x-keygate-team", "x-owner"}},
	}
	spoofed := func(k string) []*authv3.CheckRequest {
		return []*authv3.CheckRequest{
			req("GET", "/api/v1/patients", with(bearer(k), "x-keygate-team", "evil", "x-owner", "evil"), nil),
			rawReq("GET", "/api/v1/patients", [][2]string{{"authorization", "Bearer " + k}, {"X-Keygate-Team", "evil"}, {"X-Owner", "evil"}}),
		}
	}
	for _, tc := range cases {
		for _, c := range e.codecs() {
			for i, r := range spoofed(tc.key) {
				t.Run(tc.name+"/"+c.name+"/"+[]string{"map", "header_map"}[i], func(t *testing.T) {
					ok := okResponse(t, c.check(r))
					got := headerMap(ok.GetHeaders())
					for h, v := range tc.set {
						if got[h] != v {
							t.Errorf("%s = %q, want %q", h, got[h], v)
						}
						if slices.Contains(ok.GetHeadersToRemove(), h) {
							t.Errorf("%s is both set and removed: %v", h, ok.GetHeadersToRemove())
						}
					}
					for _, h := range tc.remove {
						if v, set := got[h]; set {
							t.Errorf("%s = %q set for a key without it", h, v)
						}
						if !slices.Contains(ok.GetHeadersToRemove(), h) {
							t.Errorf("the client's %s is not removed: %v", h, ok.GetHeadersToRemove())
						}
					}
					if _, set := got["x-keygate-unsent"]; set {
						t.Error("metadata without a configured header was sent")
					}
				})
			}
		}
	}
}

// TestHTTPMetadataHeaders: the same in forward-auth mode.
func TestHTTPMetadataHeaders(t *testing.T) {
	h := newHTTPEnvWith(t, envOpts{routes: testRoutes, metaHeaders: metaHeaders})
	k := h.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"},
		Metadata: map[string]string{"team": "billing"}})
	w := h.do("GET", "/authz/api/v1/patients", "Authorization", "Bearer "+k.Key, "X-Keygate-Team", "evil", "X-Owner", "evil")
	wantHTTPAllowed(t, w, k, "patients:read", "live")
	if got := w.Header().Values("x-keygate-team"); len(got) != 1 || got[0] != "billing" {
		t.Errorf("x-keygate-team = %q, want [billing]", got)
	}
	if got := w.Header().Values("x-owner"); len(got) != 0 {
		t.Errorf("x-owner = %q on a key without it", got)
	}
	rm := strings.Split(w.Header().Get("x-envoy-auth-headers-to-remove"), ", ")
	if !slices.Contains(rm, "x-owner") || slices.Contains(rm, "x-keygate-team") {
		t.Errorf("x-envoy-auth-headers-to-remove = %q, want x-owner and not x-keygate-team", rm)
	}
}
