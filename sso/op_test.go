package sso

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/sso/ssotest"
)

// The identity provider of these tests is zitadel's OpenID Provider, run
// on loopback by ssotest.

// The relying party's page after a sign-in shows the identity as JSON.
const (
	identityOpen  = `<!doctype html><title>signed in</title><pre id="identity">`
	identityClose = `</pre>`
)

// identityOf reads the identity from that page.
func identityOf(t *testing.T, page string) map[string]any {
	t.Helper()
	s, ok := strings.CutPrefix(page, identityOpen)
	s, ok2 := strings.CutSuffix(s, identityClose)
	var got map[string]any
	if !ok || !ok2 {
		t.Fatalf("not the signed-in page: %s", page)
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(s)), &got); err != nil {
		t.Fatalf("%v: %s", err, page)
	}
	return got
}

// startRP starts a relying party like the console: Begin at LoginPath, Finish at
// CallbackPath, answering with the identity as JSON or the error page.
func startRP(t *testing.T, ln net.Listener, p *Provider) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoginPath, p.Begin)
	mux.HandleFunc("GET "+CallbackPath, func(w http.ResponseWriter, r *http.Request) {
		id, err := p.Finish(r.Context(), w, r)
		if err != nil {
			WriteError(w, r, err)
			return
		}
		pr := id.Principal()
		b, _ := json.Marshal(map[string]any{"actor_type": pr.Actor.Type, "actor": pr.Actor.Name, "role": pr.Role,
			"name": id.Name, "subject": id.Subject, "groups": id.Groups})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, identityOpen+html.EscapeString(string(b))+identityClose)
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// startPair starts the provider and a relying party registered with it.
func startPair(t *testing.T, scopes []string) (rpURL string, o *ssotest.Provider) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rpURL = "http://" + ln.Addr().String()
	o = ssotest.Start(t, rpURL+CallbackPath)
	p, err := New(context.Background(), Config{Issuer: o.Issuer, ClientID: ssotest.ClientID, ClientSecret: ssotest.ClientSecret, Scopes: scopes,
		Roles: map[admin.Role][]string{admin.RoleAdmin: {"keygate-admins"}, admin.RoleViewer: {"keygate-viewers"}},
		Log:   slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return startRP(t, ln, p), o
}

// TestProviderHTTP signs each user in through the provider's login form
// with a plain HTTP client (the browser's part is TestProviderBrowser's).
func TestProviderHTTP(t *testing.T) {
	rpURL, _ := startPair(t, []string{"openid", "email", "profile", "groups"})
	tests := []struct {
		user, password string
		status         int
		role, actor    string
		page           string
	}{
		{user: "ada", password: ssotest.Password("ada"), status: 200, role: "admin", actor: "ada@example.com"},
		{user: "vic", password: ssotest.Password("vic"), status: 200, role: "viewer", actor: "vic@example.com"},
		{user: "sam", password: ssotest.Password("sam"), status: 403, page: "sam@example.com is in &#34;groups&#34; [sales], none of which console.oidc.roles maps"},
		{user: "ada", password: "wrong", status: 200, page: "username or password wrong"},
	}
	for _, tc := range tests {
		t.Run(tc.user+"/"+tc.password, func(t *testing.T) {
			status, body := httpLogin(t, rpURL, tc.user, tc.password)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if tc.page != "" {
				if !strings.Contains(body, tc.page) {
					t.Fatalf("page lacks %q: %s", tc.page, body)
				}
				return
			}
			if got := identityOf(t, body); got["actor_type"] != "oidc" || got["actor"] != tc.actor || got["role"] != tc.role {
				t.Errorf("signed in as %v, want oidc %s as %s", got, tc.actor, tc.role)
			}
		})
	}
}

// httpLogin goes from the relying party's login to the provider's form,
// posts it, and follows the redirects back; it returns the last status
// and body.
func httpLogin(t *testing.T, rpURL, user, password string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Get(rpURL + LoginPath)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	id := resp.Request.URL.Query().Get("authRequestID")
	if resp.StatusCode != 200 || id == "" {
		t.Fatalf("login did not reach the provider's form: %d %s", resp.StatusCode, resp.Request.URL)
	}
	form := resp.Request.URL.ResolveReference(&url.URL{Path: ssotest.LoginPath})
	resp, err = c.PostForm(form.String(), url.Values{"id": {id}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMain keeps the provider's request log (it logs through the default
// logger) out of the test output, warnings and errors apart.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}
