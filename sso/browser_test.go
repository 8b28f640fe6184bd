package sso

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/sso/ssotest"
)

// chromiumPath is Debian's Chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts a headless Chromium for t, or fails: a missing
// browser is a broken machine, not a reason to pass. Under -short the
// test is skipped, saying so.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping a test that drives Chromium")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing (apt-get install chromium; .ci/run installs it): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, which lives as long as ctx: no
	// timeout on it; each test's steps have their own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	return ctx
}

// TestProviderBrowser signs in with a real browser through the real
// provider's login page: the state cookie must survive the provider's
// redirect back (SameSite=Lax), and the user lands with the role their
// groups give; a user in no mapped group lands on the 403 page.
func TestProviderBrowser(t *testing.T) {
	rpURL, o := startPair(t, nil) // the default scopes: the groups come from userinfo
	ctx := newBrowser(t)
	tests := []struct {
		user, role, actor, refusal string
	}{
		{user: "ada", role: "admin", actor: "ada@example.com"},
		{user: "vic", role: "viewer", actor: "vic@example.com"},
		{user: "sam", refusal: "sam@example.com is in \"groups\" [sales], none of which console.oidc.roles maps to admin or viewer"},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			// Each user in a fresh tab with no cookies of the last.
			tab, cancel := chromedp.NewContext(ctx)
			defer cancel()
			if err := chromedp.Do(tab); err != nil { // opens the tab, outside the timeout
				t.Fatal(err)
			}
			tab, cancelTimeout := context.WithTimeout(tab, 30*time.Second)
			defer cancelTimeout()
			err := chromedp.Do(tab,
				chromedp.Navigate(rpURL+LoginPath),
				chromedp.WaitVisible(chromedp.ID("username")),
			)
			var loginURL, body string
			if err == nil {
				loginURL, err = chromedp.Run(tab, chromedp.Location())
			}
			if err == nil {
				err = chromedp.Do(tab,
					chromedp.SendKeys(chromedp.ID("username"), tc.user),
					chromedp.SendKeys(chromedp.ID("password"), ssotest.Password(tc.user)),
					chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
					chromedp.WaitVisible(chromedp.CSS("#identity, #sso-error")),
				)
			}
			if err == nil {
				body, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS("body")))
			}
			if err != nil {
				t.Fatalf("browser: %v (login page %s)", err, loginURL)
			}
			if !strings.HasPrefix(loginURL, o.Issuer+ssotest.LoginPath) {
				t.Errorf("the login page was %s, not the provider's", loginURL)
			}
			if tc.refusal != "" {
				if !strings.Contains(body, tc.refusal) || !strings.Contains(body, "Single sign-on failed") {
					t.Errorf("refusal page says %q, want %q", body, tc.refusal)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(strings.TrimSpace(body)), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got["actor_type"] != "oidc" || got["actor"] != tc.actor || got["role"] != tc.role {
				t.Errorf("signed in as %v, want oidc %s as %s", got, tc.actor, tc.role)
			}
		})
	}
}
