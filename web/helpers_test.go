package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

var testScopeRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*:[a-z][a-z0-9_-]*$`)

// env is a key database, the service over it, and the portal and
// console serving it on two test servers, as the portal and main
// listeners would.
type env struct {
	t       *testing.T
	db      store.DB
	svc     *admin.Service
	portal  *httptest.Server
	console *httptest.Server
	cons    *Console
	now     atomic.Int64 // Unix nanoseconds the service reads as now; 0: the clock
}

const (
	adminToken  = "kgadm_test-admin"
	viewerToken = "kgadm_test-viewer"
)

func newEnv(t *testing.T, pc PortalConfig) *env {
	t.Helper()
	e := &env{t: t}
	ctx := context.Background()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "keygate.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	fs, err := keys.NewFormats([]keys.Format{{Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true}, {Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}})
	if err != nil {
		t.Fatal(err)
	}
	e.portal = httptest.NewUnstartedServer(nil)
	e.portal.Start()
	t.Cleanup(e.portal.Close)
	e.svc, err = admin.New(admin.Config{
		Formats: fs, Hasher: keys.NewHasher(nil), Plans: []string{"test", "live"}, Grace: time.Hour,
		ValidScope: func(s string) error {
			if !testScopeRE.MatchString(s) {
				return fmt.Errorf("%q is not resource:action", s)
			}
			return nil
		},
		Now: func() time.Time {
			if n := e.now.Load(); n != 0 {
				return time.Unix(0, n)
			}
			return time.Now()
		},
		Portal: admin.PortalConfig{PublicURL: e.portal.URL},
	}, db)
	if err != nil {
		t.Fatal(err)
	}
	e.db = db
	log := slog.New(slog.DiscardHandler)
	pc.Service, pc.Log = e.svc, log
	if pc.Branding.Title == "" {
		pc.Branding = Branding{Title: "Acme API keys", AccentColor: "#0a7"}
	}
	p, err := NewPortal(pc)
	if err != nil {
		t.Fatal(err)
	}
	e.portal.Config.Handler = p
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	tokens, err := admin.NewTokens("", []admin.TokenConfig{{Name: "ops", SHA256: sum(adminToken), Role: "admin"}, {Name: "auditor", SHA256: sum(viewerToken), Role: "viewer"}})
	if err != nil {
		t.Fatal(err)
	}
	e.cons, err = NewConsole(ConsoleConfig{Service: e.svc, Tokens: tokens, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	e.console = httptest.NewServer(e.cons)
	t.Cleanup(e.console.Close)
	return e
}

// link opens a portal session as the platform's backend would.
func (e *env) link(r admin.PortalSessionRequest) string {
	e.t.Helper()
	l, err := e.svc.OpenPortalSession(context.Background(), r)
	if err != nil {
		e.t.Fatal(err)
	}
	return l.URL
}

// fullSession is the example session for tenant acme.
func fullSession() admin.PortalSessionRequest {
	return admin.PortalSessionRequest{Tenant: "acme", User: "jane@acme.com",
		Permissions: []string{"keys:create", "keys:revoke", "keys:roll", "usage:read", "audit:read"},
		Envs:        []string{"test", "live"}, Scopes: []string{"patients:read", "forms:write"},
		ReturnURL: "https://app.acme.com/settings"}
}

// cookie redeems a link and returns the session cookie.
func (e *env) cookie(link string) *http.Cookie {
	e.t.Helper()
	resp := noRedirect(e.t, http.MethodGet, link, "", nil)
	for _, c := range resp.Cookies() {
		if c.Name == PortalCookie {
			return c
		}
	}
	e.t.Fatalf("GET %s: %d, no %s cookie", link, resp.StatusCode, PortalCookie)
	return nil
}

// noRedirect sends one request and returns the answer, not following
// redirects; the body is read into the response's Body again.
func noRedirect(t *testing.T, method, url, body string, h http.Header, cookies ...*http.Cookie) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	for _, c := range cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

func bodyOf(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return string(b)
}

func jsonOf(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(bodyOf(resp)), &out); err != nil {
		t.Fatalf("%s: body is not JSON: %v: %q", resp.Request.URL, err, bodyOf(resp))
	}
	return out
}

// createAs makes a key as the system (an operator), for tenant.
func (e *env) createAs(tenant string) keys.Record {
	e.t.Helper()
	c, err := e.svc.Create(context.Background(), admin.CreateRequest{Tenant: tenant, Name: "theirs", Env: keys.EnvTest})
	if err != nil {
		e.t.Fatal(err)
	}
	return c.Record
}

// form is a same-origin form post's headers, as a browser sends them.
func form() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"same-origin"}}
}

// jsonPost is a same-origin JSON post's headers.
func jsonPost() http.Header {
	return http.Header{"Content-Type": {"application/json"}, "Sec-Fetch-Site": {"same-origin"}}
}
