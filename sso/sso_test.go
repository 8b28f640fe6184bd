package sso

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var testRoles = map[admin.Role][]string{admin.RoleAdmin: {"keygate-admins"}, admin.RoleViewer: {"keygate-viewers", "sre", "jane@example.com"}}

func newTestProvider(t *testing.T, issuer string, edit func(*Config)) (*Provider, *clock) {
	t.Helper()
	clk := &clock{t: time.Now()}
	cfg := Config{Issuer: issuer, ClientID: "keygate", ClientSecret: "s3cret", Roles: testRoles,
		Now: clk.now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p, clk
}

// begin runs Begin for a browser at keygate.test and returns the state
// cookie it set and where it redirected.
func begin(t *testing.T, p *Provider) (*http.Cookie, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	p.Begin(rec, httptest.NewRequest("GET", "http://keygate.test"+LoginPath, nil))
	if rec.Code != http.StatusFound {
		t.Fatalf("Begin: status %d, body %s", rec.Code, rec.Body)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != CookieName {
		t.Fatalf("Begin set cookies %v, want one %s", cookies, CookieName)
	}
	return cookies[0], rec.Header().Get("Location")
}

// finish sends the callback to Finish with the cookie (nil: none).
func finish(p *Provider, callback string, c *http.Cookie) (Identity, *httptest.ResponseRecorder, error) {
	req := httptest.NewRequest("GET", callback, nil)
	if c != nil {
		req.AddCookie(c)
	}
	rec := httptest.NewRecorder()
	id, err := p.Finish(req.Context(), rec, req)
	return id, rec, err
}

func TestFinish(t *testing.T) {
	idp := newFakeIdP(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	user := map[string]any{"sub": "u-1", "email": "jane@example.com", "name": "Jane Doe", "groups": []string{"staff", "keygate-admins"}}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for k, v := range user {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name     string
		claims   map[string]any
		info     map[string]any
		tweak    func(map[string]any)
		forge    bool
		callback func(cb string) string // changes the callback URL
		cookie   func(c *http.Cookie, p *Provider) *http.Cookie
		later    time.Duration // the clock moves on between Begin and Finish
		roles    string        // RolesClaim
		want     error
		wantID   Identity
	}{
		{name: "admin", claims: user, wantID: Identity{Subject: "u-1", Email: "jane@example.com", Name: "Jane Doe", Groups: []string{"staff", "keygate-admins"}, Role: admin.RoleAdmin}},
		{name: "viewer", claims: with("groups", []string{"sre"}), wantID: Identity{Subject: "u-1", Email: "jane@example.com", Name: "Jane Doe", Groups: []string{"sre"}, Role: admin.RoleViewer}},
		{name: "admin wins over viewer", claims: with("groups", []string{"keygate-viewers", "keygate-admins"}), wantID: Identity{Subject: "u-1", Email: "jane@example.com", Name: "Jane Doe", Groups: []string{"keygate-viewers", "keygate-admins"}, Role: admin.RoleAdmin}},
		{name: "a single string claim", claims: with("groups", "keygate-viewers"), wantID: Identity{Subject: "u-1", Email: "jane@example.com", Name: "Jane Doe", Groups: []string{"keygate-viewers"}, Role: admin.RoleViewer}},
		{name: "nested roles claim", roles: "realm_access.roles", claims: with("realm_access", map[string]any{"roles": []string{"keygate-admins"}}), wantID: Identity{Subject: "u-1", Email: "jane@example.com", Name: "Jane Doe", Groups: []string{"keygate-admins"}, Role: admin.RoleAdmin}},
		{name: "email and groups from userinfo", claims: map[string]any{"sub": "u-1"}, info: map[string]any{"email": "jane@example.com", "preferred_username": "jane", "groups": []string{"sre"}},
			wantID: Identity{Subject: "u-1", Email: "jane@example.com", Name: "jane", Groups: []string{"sre"}, Role: admin.RoleViewer}},
		{name: "unverified email is not the actor", claims: with("email_verified", false), wantID: Identity{Subject: "u-1", Name: "Jane Doe", Groups: []string{"staff", "keygate-admins"}, Role: admin.RoleAdmin}},
		{name: "people by email", roles: "email", claims: user, wantID: Identity{Subject: "u-1", Email: "jane@example.com", Name: "Jane Doe", Groups: []string{"jane@example.com"}, Role: admin.RoleViewer}},
		{name: "people by unverified email", roles: "email", claims: with("email_verified", "false"), want: ErrNoRole},
		{name: "no mapped group", claims: with("groups", []string{"staff"}), want: ErrNoRole},
		{name: "no groups claim", claims: with("groups", nil), want: ErrNoRole},
		{name: "wrong audience", claims: user, tweak: func(c map[string]any) { c["aud"] = "someone-else" }, want: ErrToken},
		{name: "wrong nonce", claims: user, tweak: func(c map[string]any) { c["nonce"] = "replayed" }, want: ErrToken},
		{name: "no nonce", claims: user, tweak: func(c map[string]any) { delete(c, "nonce") }, want: ErrToken},
		{name: "wrong issuer", claims: user, tweak: func(c map[string]any) { c["iss"] = "https://evil.example" }, want: ErrToken},
		{name: "expired token", claims: user, tweak: func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, want: ErrToken},
		{name: "signed by another key", claims: user, forge: true, want: ErrToken},
		{name: "wrong state", claims: user, callback: func(cb string) string { return setParam(cb, "state", "not-the-state") }, want: ErrState},
		{name: "missing state", claims: user, callback: func(cb string) string { return setParam(cb, "state", "") }, want: ErrState},
		{name: "missing code", claims: user, callback: func(cb string) string { return setParam(cb, "code", "") }, want: ErrNoCode},
		{name: "provider error", claims: user, callback: func(cb string) string {
			return "http://keygate.test" + CallbackPath + "?error=access_denied&error_description=The+user+declined"
		}, want: ErrDenied},
		{name: "no cookie", claims: user, cookie: func(*http.Cookie, *Provider) *http.Cookie { return nil }, want: ErrCookie},
		{name: "tampered cookie", claims: user, cookie: func(c *http.Cookie, _ *Provider) *http.Cookie {
			b := []byte(c.Value)
			b[len(b)/2] ^= 1
			return &http.Cookie{Name: c.Name, Value: string(b)}
		}, want: ErrCookie},
		{name: "forged cookie", claims: user, cookie: func(c *http.Cookie, p *Provider) *http.Cookie {
			forger, _ := newSealer("another secret")
			st, err := p.seal.open(c.Value, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			v, _ := forger.seal(st)
			return &http.Cookie{Name: c.Name, Value: v}
		}, want: ErrCookie},
		{name: "garbage cookie", claims: user, cookie: func(c *http.Cookie, _ *Provider) *http.Cookie {
			return &http.Cookie{Name: c.Name, Value: "not!base64"}
		}, want: ErrCookie},
		{name: "expired cookie", claims: user, later: StateTTL + time.Second, want: ErrExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idp.claims, idp.info, idp.tweak = tc.claims, tc.info, tc.tweak
			idp.signer = nil
			if tc.forge {
				idp.signer = other
			}
			p, clk := newTestProvider(t, idp.issuer(), func(c *Config) { c.RolesClaim = tc.roles })
			c, loc := begin(t, p)
			cb := idp.authorize(loc)
			if tc.callback != nil {
				cb = tc.callback(cb)
			}
			if tc.cookie != nil {
				c = tc.cookie(c, p)
			}
			clk.add(tc.later)
			id, rec, err := finish(p, cb, c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Finish: err %v, want %v", err, tc.want)
			}
			if err != nil {
				page := httptest.NewRecorder()
				WriteError(page, httptest.NewRequest("GET", cb, nil), err)
				if page.Code != Status(tc.want) || !strings.Contains(page.Body.String(), "Single sign-on failed") {
					t.Errorf("WriteError: status %d, body %s", page.Code, page.Body)
				}
				return
			}
			if !equalIdentity(id, tc.wantID) {
				t.Errorf("identity %+v, want %+v", id, tc.wantID)
			}
			pr := id.Principal()
			if pr.Actor != (store.Actor{Type: store.ActorOIDC, Name: tc.wantID.ActorName()}) || pr.Role != tc.wantID.Role {
				t.Errorf("principal %+v", pr)
			}
			cleared := rec.Result().Cookies()
			if len(cleared) != 1 || cleared[0].MaxAge >= 0 || cleared[0].Path != "/console/oidc" {
				t.Errorf("Finish did not clear the state cookie: %v", cleared)
			}
		})
	}
}

// TestFinishOnce: a callback replayed with the same cookie fails, the code
// having been used (the provider refuses it).
func TestFinishOnce(t *testing.T) {
	idp := newFakeIdP(t)
	idp.claims = map[string]any{"sub": "u-1", "groups": []string{"sre"}}
	p, _ := newTestProvider(t, idp.issuer(), nil)
	c, loc := begin(t, p)
	cb := idp.authorize(loc)
	if _, _, err := finish(p, cb, c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := finish(p, cb, c); !errors.Is(err, ErrExchange) {
		t.Fatalf("replayed callback: %v, want %v", err, ErrExchange)
	}
}

func equalIdentity(a, b Identity) bool {
	return a.Subject == b.Subject && a.Email == b.Email && a.Name == b.Name && a.Role == b.Role &&
		strings.Join(a.Groups, "\n") == strings.Join(b.Groups, "\n")
}

func setParam(raw, k, v string) string {
	u, _ := url.Parse(raw)
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

func TestBeginCookieAndRedirect(t *testing.T) {
	idp := newFakeIdP(t)
	tests := []struct {
		name, redirect   string
		wantPath, wantCB string
		wantSecure       bool
	}{
		{name: "from the request", wantPath: "/console/oidc", wantCB: "http://keygate.test/console/oidc/callback"},
		{name: "configured https behind a prefix", redirect: "https://ops.example.com/keygate/console/oidc/callback",
			wantPath: "/keygate/console/oidc", wantCB: "https://ops.example.com/keygate/console/oidc/callback", wantSecure: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newTestProvider(t, idp.issuer(), func(c *Config) { c.RedirectURL = tc.redirect })
			c, loc := begin(t, p)
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != tc.wantPath || c.Secure != tc.wantSecure || c.MaxAge != 600 {
				t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=%s, Secure=%v, Max-Age=600", c, tc.wantPath, tc.wantSecure)
			}
			if strings.Contains(c.Value, "code_verifier") || strings.Contains(c.Value, "\"s\"") {
				t.Errorf("cookie value is not sealed: %s", c.Value)
			}
			u, _ := url.Parse(loc)
			q := u.Query()
			if u.Path != "/authorize" || q.Get("client_id") != "keygate" || q.Get("redirect_uri") != tc.wantCB ||
				q.Get("scope") != "openid email profile" || q.Get("code_challenge_method") != "S256" ||
				len(q.Get("state")) < 43 || len(q.Get("nonce")) < 43 || len(q.Get("code_challenge")) != 43 {
				t.Errorf("redirect %s", loc)
			}
			_, loc2 := begin(t, p)
			if u2, _ := url.Parse(loc2); u2.Query().Get("state") == q.Get("state") || u2.Query().Get("nonce") == q.Get("nonce") {
				t.Error("two sign-ins share a state or nonce")
			}
		})
	}
}

// TestUnavailable: a provider that is down does not stop New; logins get
// 503 until it answers, tried again after a pause.
func TestUnavailable(t *testing.T) {
	idp := newFakeIdP(t)
	idp.down.Store(true)
	p, clk := newTestProvider(t, idp.issuer(), nil)
	if err := p.Ready(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("Ready: %v", err)
	}
	rec := httptest.NewRecorder()
	p.Begin(rec, httptest.NewRequest("GET", "http://keygate.test"+LoginPath, nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "cannot be reached") || !strings.Contains(rec.Body.String(), idp.issuer()) {
		t.Fatalf("Begin with the provider down: %d %s", rec.Code, rec.Body)
	}
	idp.down.Store(false)
	if err := p.Ready(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Ready tried again at once: %v", err)
	}
	clk.add(discoveryRetry)
	if err := p.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after the pause: %v", err)
	}
	begin(t, p)

	refused, _ := newTestProvider(t, "http://127.0.0.1:1", nil)
	if err := refused.Ready(context.Background()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Ready with nothing listening: %v", err)
	}
}

// TestNew: a bad config is refused before anything is fetched; the
// secret's variable is read.
func TestNew(t *testing.T) {
	if _, err := New(context.Background(), Config{Issuer: "http://idp.example.com", ClientID: "kg", Roles: testRoles}); err == nil ||
		!strings.Contains(err.Error(), "console.oidc.issuer:") {
		t.Errorf("New with an http issuer: %v", err)
	}
	if _, err := New(context.Background(), Config{Issuer: "https://idp.example.com", ClientID: "kg", ClientSecretEnv: "KEYGATE_TEST_OIDC_UNSET", Roles: testRoles}); err == nil ||
		!strings.Contains(err.Error(), "console.oidc.client_secret_env: $KEYGATE_TEST_OIDC_UNSET is not set") {
		t.Errorf("New with an unset secret variable: %v", err)
	}
	idp := newFakeIdP(t)
	idp.claims = map[string]any{"sub": "u-1", "groups": []string{"sre"}}
	t.Setenv("KEYGATE_TEST_OIDC_SECRET", "from-env")
	p, _ := newTestProvider(t, idp.issuer(), func(c *Config) { c.ClientSecret, c.ClientSecretEnv = "", "KEYGATE_TEST_OIDC_SECRET" })
	if p.cfg.ClientSecret != "from-env" {
		t.Fatalf("client secret %q, want the variable's", p.cfg.ClientSecret)
	}
	c, loc := begin(t, p)
	if _, _, err := finish(p, idp.authorize(loc), c); err != nil {
		t.Fatal(err)
	}
	// A replica with the same secret opens this one's cookie.
	other, _ := newTestProvider(t, idp.issuer(), func(c *Config) { c.ClientSecret = "from-env" })
	c, loc = begin(t, p)
	if _, _, err := finish(other, idp.authorize(loc), c); err != nil {
		t.Fatalf("another replica with the same secret: %v", err)
	}
	// Public clients have no shared secret: each process its own key.
	pub1, _ := newTestProvider(t, idp.issuer(), func(c *Config) { c.ClientSecret = "" })
	pub2, _ := newTestProvider(t, idp.issuer(), func(c *Config) { c.ClientSecret = "" })
	c, loc = begin(t, pub1)
	if _, _, err := finish(pub2, idp.authorize(loc), c); !errors.Is(err, ErrCookie) {
		t.Fatalf("a public client's cookie in another process: %v, want %v", err, ErrCookie)
	}
}
