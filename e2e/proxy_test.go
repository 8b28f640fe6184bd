package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testrun"
)

// proxy is what differs between the proxies in front of Keygate; the
// scenario in testProxy is the same for every one.
type proxy struct {
	name string
	// start renders the proxy's example with the three addresses filled in
	// and starts the proxy on listen.
	start func(t *testing.T, dir, listen, keygateAddr, appAddr string)
	// requestIDLen is the length of the request id the proxy makes up and
	// sends to Keygate and the upstream (nginx's $request_id: 32).
	requestIDLen int
	// codeHeader: x-keygate-code reaches the client on denials.
	codeHeader bool
	// stripsAll: the proxy removes every client-sent X-Keygate-* header,
	// not only the names it knows (nginx cannot match a prefix).
	stripsAll bool
	// fallback is a word of the proxy's own 503 body when Keygate is down.
	fallback string
	// more runs proxy-specific subtests after the shared ones, while
	// Keygate still answers.
	more func(t *testing.T, s *stage)
}

// stage is one run of the scenario: Keygate with three keys, the proxy,
// and the upstream the proxy sends allowed requests to.
type stage struct {
	kg                      *keygate
	reader, formsOnly, tiny createdKey
	up                      *upstream
	app                     *httptest.Server
	f                       *front
}

// injected is what Keygate tells the upstream for the stage's reader key.
func (s *stage) injected() map[string]string {
	return map[string]string{
		"X-Keygate-Key-Id": s.reader.ID,
		"X-Keygate-Tenant": "acme",
		"X-Keygate-Org":    "acme",
		"X-Keygate-Env":    "test",
		"X-Keygate-Scopes": "patients:read,forms:write",
		"X-Keygate-Plan":   "test",
	}
}

// testProxy runs p's example in front of a real Keygate and a test upstream:
// allowed requests reach the upstream with Keygate's headers and without the
// key or a client's X-Keygate-*; every denial reaches the client with
// Keygate's status, JSON body and headers; the proxy fails closed with 503
// when Keygate is down.
func testProxy(t *testing.T, p proxy) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	dir := t.TempDir()

	s := &stage{kg: startKeygate(t, dir), up: &upstream{}}
	s.reader = s.kg.createKey(t, "--tenant", "acme", "--scopes", "patients:read,forms:write")
	s.formsOnly = s.kg.createKey(t, "--tenant", "acme", "--scopes", "forms:read")
	s.tiny = s.kg.createKey(t, "--tenant", "small", "--scopes", "patients:read", "--plan", "tiny")
	stopKeygate := s.kg.serve(t)
	s.app = httptest.NewServer(s.up)
	t.Cleanup(s.app.Close)
	listen := testrun.FreeAddr(t)
	p.start(t, dir, listen, s.kg.httpAddr, strings.TrimPrefix(s.app.URL, "http://"))
	s.f = newFront(ctx, listen)
	up, do := s.up, s.f.do

	// denied checks a denial reached the client as Keygate rendered it.
	denied := func(t *testing.T, r result, status int, code string) errBody {
		t.Helper()
		b := deniedBody(t, r, status, code)
		if got := r.header.Values("X-Keygate-Code"); p.codeHeader && (len(got) != 1 || got[0] != code) {
			t.Errorf("X-Keygate-Code %q, want [%q]", got, code)
		} else if !p.codeHeader && len(got) != 0 {
			t.Errorf("X-Keygate-Code reached the client: %q", got)
		}
		if len(b.Error.RequestID) != p.requestIDLen {
			t.Errorf("request_id %q, want the id %s made up", b.Error.RequestID, p.name)
		}
		return b
	}
	// passedOn checks the upstream got Keygate's headers, each once, and
	// neither the key nor a client's X-Keygate-*.
	passedOn := func(t *testing.T, h http.Header) {
		t.Helper()
		injected := s.injected()
		for k, want := range injected {
			if got := h.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("upstream %s = %q, want exactly [%q]", k, got, want)
			}
		}
		for k, v := range h {
			_, ok := injected[k]
			switch {
			case k == "Authorization",
				!ok && strings.HasPrefix(k, "X-Keygate-") && (p.stripsAll || k == "X-Keygate-Error" || k == "X-Keygate-Status" || k == "X-Keygate-Code"):
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
		if id := h.Get("X-Request-Id"); len(id) != p.requestIDLen {
			t.Errorf("upstream X-Request-Id %q, want the id %s made up", id, p.name)
		}
	}

	t.Run("allowed", func(t *testing.T) {
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42?full=1", map[string]string{
			"Authorization":    bearer(s.reader),
			"X-Keygate-Tenant": "evil",
			"X-Keygate-Key-Id": "key_spoofed",
			"X-Keygate-Scopes": "admin:*",
			"X-Keygate-Error":  "spoofed",
			"X-Keygate-Status": "200",
			"X-Keygate-Other":  "spoofed",
			"X-Request-Id":     "client-chosen",
		})
		if r.status != 200 || string(r.body) != "upstream ok" {
			t.Fatalf("status %d body %q, want 200 from the upstream; headers %v", r.status, r.body, r.header)
		}
		if up.count() != before+1 {
			t.Fatalf("upstream saw %d requests, want 1", up.count()-before)
		}
		h, uri, _ := up.last()
		if uri != "/api/v1/patients/42?full=1" {
			t.Errorf("upstream URI %q", uri)
		}
		passedOn(t, h)
		for k, want := range map[string]string{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99"} {
			if got := r.header.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("client %s = %q, want exactly [%q]", k, got, want)
			}
		}
		for _, k := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Reset"} {
			if v := r.header.Values(k); len(v) != 1 || v[0] == "" {
				t.Errorf("client %s = %q, want one value; headers %v", k, v, r.header)
			}
		}
		for k, v := range r.header {
			if strings.HasPrefix(k, "X-Keygate-") || k == "X-Envoy-Auth-Headers-To-Remove" || k == "Retry-After" {
				t.Errorf("client got %s on an allowed response: %q", k, v)
			}
		}
	})

	t.Run("a body reaches the upstream", func(t *testing.T) {
		r := s.f.send(t, "POST", "/api/v1/forms/7", `{"answer":42}`, map[string]string{
			"Authorization": bearer(s.reader), "Content-Type": "application/json",
		})
		if r.status != 200 {
			t.Fatalf("status %d body %s", r.status, r.body)
		}
		h, uri, body := up.last()
		if uri != "/api/v1/forms/7" || body != `{"answer":42}` {
			t.Errorf("upstream got %s with body %q, want the client's body", uri, body)
		}
		passedOn(t, h)
	})

	t.Run("missing key is 401", func(t *testing.T) {
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42", nil)
		denied(t, r, 401, "missing_api_key")
		if w := r.header.Values("WWW-Authenticate"); len(w) != 1 || !strings.HasPrefix(w[0], `Bearer realm="keygate"`) {
			t.Errorf("WWW-Authenticate %q, want one Bearer realm=\"keygate\"", w)
		}
		if up.count() != before {
			t.Error("a denied request reached the upstream")
		}
	})

	t.Run("invalid key is 401", func(t *testing.T) {
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": "Bearer sk_test_nope"})
		denied(t, r, 401, "invalid_api_key")
		if w := r.header.Get("WWW-Authenticate"); !strings.Contains(w, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\"", w)
		}
	})

	t.Run("missing scope is 403", func(t *testing.T) {
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": bearer(s.formsOnly)})
		b := denied(t, r, 403, "insufficient_scope")
		if !strings.Contains(b.Error.Message, "patients:read") {
			t.Errorf("message %q does not name the missing scope", b.Error.Message)
		}
		if up.count() != before {
			t.Error("a denied request reached the upstream")
		}
	})

	t.Run("unknown route is 404", func(t *testing.T) {
		denied(t, do(t, "GET", "/nope", map[string]string{"Authorization": bearer(s.reader)}), 404, "route_not_found")
	})

	t.Run("client cannot pick the route Keygate judges", func(t *testing.T) {
		before := up.count()
		spoofs := map[string]string{
			"Authorization":      bearer(s.reader),
			"X-Original-URI":     "/api/v1/patients/1",
			"X-Forwarded-Uri":    "/api/v1/patients/1",
			"X-Original-Method":  "GET",
			"X-Forwarded-Method": "GET",
		}
		for _, path := range []string{"/admin/secrets", "/api/v1/patients/../../admin/secrets"} {
			denied(t, do(t, "GET", path, spoofs), 404, "route_not_found")
		}
		denied(t, do(t, "DELETE", "/api/v1/patients/1", spoofs), 404, "route_not_found")
		if up.count() != before {
			t.Error("a spoofed route reached the upstream")
		}
	})

	t.Run("bad organization is 400", func(t *testing.T) {
		denied(t, do(t, "GET", "/api/v1/patients/42", map[string]string{
			"Authorization": bearer(s.reader), "X-Organization-Id": "not an org!",
		}), 400, "invalid_organization")
	})

	t.Run("rate limited is 429 with Retry-After", func(t *testing.T) {
		for i := range 2 {
			r := do(t, "GET", "/api/v1/patients/1", map[string]string{"Authorization": bearer(s.tiny)})
			if r.status != 200 {
				t.Fatalf("request %d of the tiny plan: status %d body %s", i+1, r.status, r.body)
			}
			if got, want := r.header.Get("X-RateLimit-Remaining"), strconv.Itoa(1-i); got != want {
				t.Errorf("request %d: X-RateLimit-Remaining %q, want %q", i+1, got, want)
			}
		}
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/1", map[string]string{"Authorization": bearer(s.tiny)})
		denied(t, r, 429, "rate_limited")
		retryAfter(t, r)
		if got := r.header.Values("X-RateLimit-Remaining"); len(got) != 1 || got[0] != "0" {
			t.Errorf("X-RateLimit-Remaining %q on the 429, want [0]", got)
		}
		if r.header.Get("RateLimit-Policy") == "" {
			t.Error("no RateLimit-Policy on the 429")
		}
		if up.count() != before {
			t.Error("a rate-limited request reached the upstream")
		}
		denied(t, do(t, "GET", "/api/v1/patients/1", map[string]string{"Authorization": bearer(s.tiny)}), 429, "rate_limited")
	})

	if p.more != nil {
		p.more(t, s)
	}

	t.Run("keygate down is 503", func(t *testing.T) {
		stopKeygate()
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": bearer(s.reader)})
		b := deniedBody(t, r, 503, "unavailable")
		if !strings.Contains(b.Error.Message, p.fallback) {
			t.Errorf("message %q, want %s's fallback", b.Error.Message, p.name)
		}
		if len(b.Error.RequestID) != p.requestIDLen {
			t.Errorf("request_id %q, want the id %s made up", b.Error.RequestID, p.name)
		}
		if n := retryAfter(t, r); n != 1 {
			t.Errorf("Retry-After %d, want 1", n)
		}
		if up.count() != before {
			t.Error("with Keygate down a request reached the upstream (must fail closed)")
		}
	})

	t.Run("keygate's own 503 with Retry-After", func(t *testing.T) {
		// Redis unreachable with on_redis_error: closed: every rate limit
		// answers 503 unavailable, on the address the proxy knows.
		s.kg.serve(t, "KEYGATE_REDIS_URL=redis://"+testrun.FreeAddr(t)+"/0", "KEYGATE_LIMITS_ON_REDIS_ERROR=closed")
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": bearer(s.reader)})
		b := denied(t, r, 503, "unavailable")
		if strings.Contains(b.Error.Message, p.fallback) {
			t.Errorf("message %q is %s's fallback, want Keygate's", b.Error.Message, p.name)
		}
		retryAfter(t, r)
		if up.count() != before {
			t.Error("a 503 reached the upstream")
		}
	})
}
