package extauthz_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
)

// httpEnv is newEnv's store, cache and admin with a second Server, built
// the same way, whose HTTP handler is mounted as cmd/keygate mounts it.
type httpEnv struct {
	*env
	mux *http.ServeMux
}

func newHTTPEnv(t *testing.T) *httpEnv {
	t.Helper()
	return newHTTPEnvWith(t, envOpts{routes: testRoutes})
}

// newHTTPEnvWith is newHTTPEnv with o's routes, trusted hops and metadata
// headers.
func newHTTPEnvWith(t *testing.T, o envOpts) *httpEnv {
	t.Helper()
	e := newEnv(t, o)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	formats, err := keys.NewFormats([]keys.Format{
		{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true},
		{Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(policy.Config{Routes: o.routes})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limits.New(limits.Config{Plans: map[string][]limits.Window{
		"test": {{Limit: 100, Period: time.Hour}},
		"live": {{Limit: 10000, Period: time.Hour}},
		"tiny": {{Limit: 2, Period: time.Hour}},
	}, OnRedisError: limits.ModeLocal}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	srv, err := extauthz.New(extauthz.Config{
		Formats: formats, Hasher: keys.NewHasher(nil), Policy: pol, Realm: "keygate", TrustedHops: o.trustedHops,
		Headers: extauthz.HeaderNames{Auth: "authorization", Org: "x-organization-id", KeyID: "x-keygate-key-id",
			Tenant: "x-keygate-tenant", OrgOut: "x-keygate-org", Env: "x-keygate-env", Scopes: "x-keygate-scopes", Plan: "x-keygate-plan",
			Metadata: o.metaHeaders},
	}, e.cache, lim, e.usage, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(extauthz.HTTPPrefix, srv.HTTPHandler())
	mux.Handle(extauthz.HTTPPrefix+"/", srv.HTTPHandler())
	return &httpEnv{env: e, mux: mux}
}

// do sends one authorization request; hdr pairs may repeat a name.
func (h *httpEnv) do(method, target string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.mux.ServeHTTP(w, r)
	return w
}

// wantHTTPAllowed checks a 200 with the injected headers of key k.
func wantHTTPAllowed(t *testing.T, w *httptest.ResponseRecorder, k admin.Created, scopes, plan string) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; headers %v body %s", w.Code, w.Header(), w.Body)
	}
	h := w.Header()
	for name, want := range map[string]string{
		"x-keygate-key-id": k.Record.ID,
		"x-keygate-tenant": k.Record.Tenant,
		"x-keygate-org":    k.Record.Tenant,
		"x-keygate-env":    string(k.Record.Env),
		"x-keygate-scopes": scopes,
		"x-keygate-plan":   plan,
	} {
		if got := h.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("%s = %q, want [%q]", name, got, want)
		}
	}
	for _, name := range []string{"ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} {
		if h.Get(name) == "" {
			t.Errorf("no %s on an allowed answer: %v", name, h)
		}
	}
	rm := strings.Split(h.Get("x-envoy-auth-headers-to-remove"), ", ")
	if len(rm) == 0 || rm[0] != "authorization" {
		t.Errorf("x-envoy-auth-headers-to-remove %q, want authorization first", rm)
	}
	for _, name := range []string{"x-keygate-status", "x-keygate-code", "x-keygate-error", "www-authenticate", "retry-after"} {
		if v := h.Values(name); len(v) != 0 {
			t.Errorf("%s on an allowed answer: %q", name, v)
		}
	}
	if w.Body.Len() != 0 {
		t.Errorf("allowed answer has a body: %q", w.Body)
	}
}

// wantHTTPDenied checks a denial: status, content type, the x-keygate-*
// status, code and error headers, and the JSON body.
func wantHTTPDenied(t *testing.T, w *httptest.ResponseRecorder, status int, code string) errBody {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; headers %v body %s", w.Code, status, w.Header(), w.Body)
	}
	h := w.Header()
	if ct := h.Get("content-type"); ct != "application/json" {
		t.Errorf("content-type %q", ct)
	}
	if got := h.Get("x-keygate-status"); got != strconv.Itoa(status) {
		t.Errorf("x-keygate-status %q, want %d", got, status)
	}
	if got := h.Get("x-keygate-code"); got != code {
		t.Errorf("x-keygate-code %q, want %q", got, code)
	}
	if got := h.Get("x-keygate-error"); got != w.Body.String() {
		t.Errorf("x-keygate-error %q differs from the body %q", got, w.Body)
	}
	var b errBody
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, w.Body)
	}
	if b.Error.Code != code || b.Error.Message == "" || b.Error.Type == "" || b.Error.RequestID == "" {
		t.Errorf("body %s, want code %s with message, type and request_id", w.Body, code)
	}
	if status == 401 && !strings.HasPrefix(h.Get("www-authenticate"), `Bearer realm="keygate"`) {
		t.Errorf("401 without WWW-Authenticate: %v", h)
	}
	if status != 401 && h.Get("www-authenticate") != "" {
		t.Errorf("WWW-Authenticate on a %d", status)
	}
	for _, name := range []string{"x-keygate-key-id", "x-keygate-tenant", "x-envoy-auth-headers-to-remove"} {
		if v := h.Values(name); len(v) != 0 {
			t.Errorf("%s on a denial: %q", name, v)
		}
	}
	return b
}

func TestHTTPOriginalRequest(t *testing.T) {
	e := newHTTPEnv(t)
	k := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvTest, Scopes: []string{"patients:read"}})
	auth := "Bearer " + k.Key
	for _, tc := range []struct {
		name, method, target string
		hdr                  []string
		status               int
	}{
		{"X-Forwarded-* (Traefik)", "GET", "/authz", []string{"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/api/v1/patients/7?x=1"}, 200},
		{"X-Forwarded-Method decides", "GET", "/authz", []string{"X-Forwarded-Method", "DELETE", "X-Forwarded-Uri", "/api/v1/patients/7"}, 404},
		{"X-Original-* (nginx)", "GET", "/authz", []string{"X-Original-Method", "GET", "X-Original-URI", "/api/v1/patients/7"}, 200},
		{"X-Original-URI decides", "GET", "/authz/api/v1/patients/7", []string{"X-Original-Method", "GET", "X-Original-URI", "/admin"}, 404},
		{"X-Forwarded-Uri before X-Original-URI", "GET", "/authz", []string{"X-Forwarded-Uri", "/nope", "X-Original-URI", "/api/v1/patients/7"}, 404},
		{"own path, /authz stripped", "GET", "/authz/api/v1/patients/7?full=1", nil, 200},
		{"own method", "POST", "/authz/api/v1/forms/1", nil, 404},
		{"own path, other route", "GET", "/authz/api/v1/other", nil, 404},
		{"bare /authz is /", "GET", "/authz", nil, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := e.do(tc.method, tc.target, append([]string{"Authorization", auth}, tc.hdr...)...)
			if tc.status == 200 {
				wantHTTPAllowed(t, w, k, "patients:read", "test")
				return
			}
			wantHTTPDenied(t, w, tc.status, "route_not_found")
		})
	}
}

func TestHTTPAllowed(t *testing.T) {
	e := newHTTPEnv(t)
	k := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read", "forms:*"}})
	w := e.do("GET", "/authz/api/v1/patients/1",
		"Authorization", "Bearer "+k.Key, "X-Keygate-Tenant", "evil", "X-Keygate-Whatever", "x")
	wantHTTPAllowed(t, w, k, "patients:read,forms:*", "live")
	if got := w.Header().Get("x-ratelimit-limit"); got != "10000" {
		t.Errorf("x-ratelimit-limit %q, want 10000", got)
	}
	if got := w.Header().Get("x-ratelimit-remaining"); got != "9999" {
		t.Errorf("x-ratelimit-remaining %q, want 9999", got)
	}
	rm := w.Header().Get("x-envoy-auth-headers-to-remove")
	for _, name := range []string{"authorization", "x-keygate-whatever"} {
		if !strings.Contains(rm, name) {
			t.Errorf("x-envoy-auth-headers-to-remove %q lacks %s", rm, name)
		}
	}
}

func TestHTTPDenials(t *testing.T) {
	e := newHTTPEnv(t)
	reader := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvTest, Scopes: []string{"patients:read"}})
	formsOnly := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvTest, Scopes: []string{"forms:read"}})
	path := "/authz/api/v1/patients/1"

	t.Run("missing key", func(t *testing.T) {
		wantHTTPDenied(t, e.do("GET", path), 401, "missing_api_key")
	})
	t.Run("two Authorization headers", func(t *testing.T) {
		w := e.do("GET", path, "Authorization", "Bearer "+reader.Key, "Authorization", "Bearer "+reader.Key)
		wantHTTPDenied(t, w, 401, "malformed_authorization")
		if got := w.Header().Get("www-authenticate"); !strings.Contains(got, `error="invalid_request"`) {
			t.Errorf("WWW-Authenticate %q, want error=\"invalid_request\"", got)
		}
	})
	t.Run("not Bearer", func(t *testing.T) {
		wantHTTPDenied(t, e.do("GET", path, "Authorization", "Basic Zm9vOmJhcg=="), 401, "malformed_authorization")
	})
	t.Run("unknown key", func(t *testing.T) {
		w := e.do("GET", path, "Authorization", "Bearer sk_test_nope")
		wantHTTPDenied(t, w, 401, "invalid_api_key")
		if got := w.Header().Get("www-authenticate"); !strings.Contains(got, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\"", got)
		}
	})
	t.Run("bad organization", func(t *testing.T) {
		wantHTTPDenied(t, e.do("GET", path, "Authorization", "Bearer "+reader.Key, "X-Organization-Id", "no spaces"), 400, "invalid_organization")
	})
	t.Run("missing scope", func(t *testing.T) {
		b := wantHTTPDenied(t, e.do("GET", path, "Authorization", "Bearer "+formsOnly.Key), 403, "insufficient_scope")
		if !strings.Contains(b.Error.Message, "patients:read") {
			t.Errorf("message %q does not name the missing scope", b.Error.Message)
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		wantHTTPDenied(t, e.do("GET", "/authz/nope", "Authorization", "Bearer "+reader.Key), 404, "route_not_found")
	})
	t.Run("request id is echoed", func(t *testing.T) {
		b := wantHTTPDenied(t, e.do("GET", path, "X-Request-Id", "req-123"), 401, "missing_api_key")
		if b.Error.RequestID != "req-123" {
			t.Errorf("request_id %q, want req-123", b.Error.RequestID)
		}
	})
	t.Run("same body as Check", func(t *testing.T) {
		w := e.do("GET", path, "Authorization", "Bearer "+formsOnly.Key, "X-Request-Id", "same-1")
		resp := e.check(req("GET", "/api/v1/patients/1", with(bearer(formsOnly.Key), "x-request-id", "same-1"), nil))
		wantDenied(t, resp, 403, "insufficient_scope", codes.PermissionDenied)
		if got := resp.GetDeniedResponse().GetBody(); got != w.Body.String() {
			t.Errorf("HTTP body %s, Check body %s: one decision path must render one body", w.Body, got)
		}
	})
}

func TestHTTPRateLimited(t *testing.T) {
	e := newHTTPEnv(t)
	k := e.create(admin.CreateRequest{Tenant: "acme", Env: keys.EnvTest, Plan: "tiny", Scopes: []string{"patients:read"}})
	for i := range 2 {
		w := e.do("GET", "/authz/api/v1/patients/1", "Authorization", "Bearer "+k.Key)
		wantHTTPAllowed(t, w, k, "patients:read", "tiny")
		if got, want := w.Header().Get("x-ratelimit-remaining"), strconv.Itoa(1-i); got != want {
			t.Errorf("request %d: x-ratelimit-remaining %q, want %q", i+1, got, want)
		}
	}
	w := e.do("GET", "/authz/api/v1/patients/1", "Authorization", "Bearer "+k.Key)
	wantHTTPDenied(t, w, 429, "rate_limited")
	ra, err := strconv.Atoi(w.Header().Get("retry-after"))
	if err != nil || ra < 1 {
		t.Errorf("retry-after %q, want an integer ≥ 1", w.Header().Get("retry-after"))
	}
	for name, want := range map[string]string{"x-ratelimit-limit": "2", "x-ratelimit-remaining": "0"} {
		if got := w.Header().Get(name); got != want {
			t.Errorf("%s %q on the 429, want %q", name, got, want)
		}
	}
	if w.Header().Get("ratelimit-policy") == "" {
		t.Error("no ratelimit-policy on the 429")
	}
}
