package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/testrun"
	"github.com/keygate/keygate/sso/ssotest"
)

// TestConsoleSSO signs operators in to the real console through a real
// OpenID Connect provider (zitadel's, on loopback) with a real browser:
// an admin's revocation is audited as {type: oidc, name: <email>}; a
// viewer is refused the same change; a user in no mapped group never
// gets a session.
func TestConsoleSSO(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping a test that drives Chromium")
	}
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing (apt-get install chromium; .ci/run installs it): %v", chromium, err)
	}
	httpAddr := testrun.FreeAddr(t) // the provider must know the callback before Keygate starts
	base := "http://" + httpAddr
	op := ssotest.Start(t, base+"/console/oidc/callback")
	cfg := startSSOServer(t, httpAddr, op.Issuer)
	adminAPI := func(method, path, body string, out any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+cfg.Admin.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 300 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	newKey := func() string {
		var k struct{ ID string }
		adminAPI("POST", "/admin/v1/keys", `{"tenant":"acme","env":"live","name":"sso test"}`, &k)
		return k.ID
	}
	keyStatus := func(id string) string {
		var k struct{ Status string }
		adminAPI("GET", "/admin/v1/keys/"+id, "", &k)
		return k.Status
	}
	revoked := func(id string) []map[string]any {
		var page struct{ Events []map[string]any }
		adminAPI("GET", "/admin/v1/audit?action=key.revoked&key_id="+id, "", &page)
		return page.Events
	}

	browser := newConsoleBrowser(t, chromium)
	tests := []struct {
		user     string
		banner   string // who the console says is signed in
		canWrite bool
		refusal  string // the SSO refusal, for a user with no role
	}{
		{user: "ada", banner: "ada@example.com (admin)", canWrite: true},
		{user: "vic", banner: "vic@example.com (viewer)"},
		{user: "sam", refusal: "sam@example.com is in \"groups\" [sales], none of which console.oidc.roles maps to admin or viewer"},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			tab := browser(t) // a browser of its own: no session of the last user
			id := newKey()
			var page string
			err := chromedp.Do(tab,
				chromedp.Navigate(base+"/console/"),
				chromedp.Click(chromedp.CSS(`a[href="/console/oidc/login"]`)),
				chromedp.WaitVisible(chromedp.ID("username")),
				chromedp.SendKeys(chromedp.ID("username"), tc.user),
				chromedp.SendKeys(chromedp.ID("password"), ssotest.Password(tc.user)),
			)
			status := 0
			if err == nil { // the form's post, then the redirects back to Keygate
				var resp *network.Response
				if resp, err = chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`button[type="submit"]`))); err == nil {
					status = int(resp.Status)
				}
			}
			if err == nil && tc.refusal == "" {
				// The callback's page goes on to the console by itself,
				// which then shows who is signed in.
				err = chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(".who")))
			}
			if err == nil {
				page, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
			}
			if err != nil {
				t.Fatalf("signing in: %v", err)
			}
			if want := map[bool]int{true: 403, false: 200}[tc.refusal != ""]; status != want {
				t.Fatalf("signing in ended with %d, want %d: %q", status, want, page)
			}
			if tc.refusal != "" {
				if !strings.Contains(page, tc.refusal) {
					t.Fatalf("refusal page: %q, want %q", page, tc.refusal)
				}
				_, err := chromedp.Run(tab, chromedp.Navigate(base+"/console/"))
				if err == nil {
					page, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
				}
				if err != nil || strings.Contains(page, tc.user+"@example.com") || !strings.Contains(page, "Sign in with SSO") {
					t.Fatalf("after a refusal the console is not at its sign-in page: %v %q", err, page)
				}
				return
			}
			if !strings.Contains(page, tc.banner) {
				t.Fatalf("console after sign-in says %q, want %q", page, tc.banner)
			}
			// Revoke the key through its confirmation page.
			err = chromedp.Do(tab, chromedp.Navigate(base+"/console/keys/"+id+"/revoke"))
			if err == nil {
				var resp *network.Response
				if resp, err = chromedp.RunResponse(tab, chromedp.Click(chromedp.CSS(`form[action$="/revoke"] button[type="submit"]`))); err == nil {
					status = int(resp.Status)
				}
			}
			if err == nil {
				page, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
			}
			if err != nil {
				t.Fatalf("revoking: %v", err)
			}
			if want := map[bool]int{true: 200, false: 403}[tc.canWrite]; status != want {
				t.Errorf("revoking ended with %d, want %d: %q", status, want, page)
			}
			events := revoked(id)
			if !tc.canWrite {
				if keyStatus(id) != "active" || len(events) != 0 || !strings.Contains(page, "Not allowed") {
					t.Fatalf("a viewer revoked a key: status %s, events %v, page %q", keyStatus(id), events, page)
				}
				return
			}
			if keyStatus(id) != "revoked" || len(events) != 1 {
				t.Fatalf("the admin's revocation: status %s, events %v, page %q", keyStatus(id), events, page)
			}
			actor, _ := events[0]["actor"].(map[string]any)
			if actor["type"] != "oidc" || actor["name"] != tc.user+"@example.com" {
				t.Errorf("audit actor %v, want {type: oidc, name: %s@example.com}", actor, tc.user)
			}
		})
	}
}

// startSSOServer runs Keygate on httpAddr with an admin token and
// console.oidc signing in at issuer (ssotest's client and groups).
func startSSOServer(t *testing.T, httpAddr, issuer string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.Portal.Addr = "127.0.0.1:0", httpAddr, "127.0.0.1:0"
	cfg.Database.URL = "sqlite:" + filepath.Join(t.TempDir(), "keygate.db")
	cfg.Admin.Token = "admin-token-for-tests"
	cfg.Console.OIDC = config.ConsoleOIDC{Issuer: issuer, ClientID: ssotest.ClientID, ClientSecretEnv: "KEYGATE_TEST_OIDC_SECRET",
		Roles: map[string][]string{"admin": {"keygate-admins"}, "viewer": {"keygate-viewers"}}}
	t.Setenv("KEYGATE_TEST_OIDC_SECRET", ssotest.ClientSecret)
	srv, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	srv.SetConsoleLinkOutput(io.Discard)
	testrun.Start(t, srv, 30*time.Second)
	return cfg
}

// TestConsoleSSOProviderDown: an identity provider that cannot be reached
// does not stop Keygate; the console offers SSO, and the login says the
// provider is down (503) instead of redirecting.
func TestConsoleSSOProviderDown(t *testing.T) {
	httpAddr := testrun.FreeAddr(t)
	startSSOServer(t, httpAddr, "http://"+testrun.FreeAddr(t)) // nothing listens there
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if status, body := get("/console/"); status != 200 || !strings.Contains(body, `href="/console/oidc/login"`) {
		t.Errorf("GET /console/: %d, want the sign-in page with the SSO link: %s", status, body)
	}
	if status, body := get("/console/oidc/login"); status != 503 || !strings.Contains(body, "the identity provider cannot be reached") {
		t.Errorf("GET /console/oidc/login: %d, want 503 saying the provider is down: %s", status, body)
	}
	if status, body := get("/console/oidc/callback?code=x&state=y"); status != 400 || !strings.Contains(body, "no sign-in was started in this browser") {
		t.Errorf("a callback without a sign-in: %d: %s", status, body)
	}
}

// newConsoleBrowser returns a function that starts a headless Chromium
// of its own (its own profile, so no cookies carry over) for one subtest.
func newConsoleBrowser(t *testing.T, path string) func(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	return func(t *testing.T) context.Context {
		t.Helper()
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancel := chromedp.NewContext(actx)
		t.Cleanup(func() { cancel(); cancelAlloc() })
		if err := chromedp.Do(ctx); err != nil { // starts the browser, outside any timeout
			t.Fatalf("starting %s: %v", path, err)
		}
		ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
		t.Cleanup(cancelTimeout)
		return ctx
	}
}
