package web_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserPortal drives a real Chromium through what a tenant's user
// does: follow the platform's link, see the keys, create one (its secret
// shown once, and working in a Check), revoke it after confirming (it
// stops working), and roll another (both work during the grace).
func TestBrowserPortal(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the browser test (it needs chromium)")
	}
	k := startKeygate(t)
	ctx := browser(t)
	older := k.adminPost("/admin/v1/keys", `{"tenant":"acme","name":"Staging server","env":"test","scopes":["patients:read"]}`)
	k.adminPost("/admin/v1/keys", `{"tenant":"acme","name":"Nightly export","env":"live","scopes":["patients:read","forms:write"]}`)
	k.adminPost("/admin/v1/keys", `{"tenant":"globex","name":"Globex key","env":"live"}`)
	link := k.adminPost("/admin/v1/portal/sessions", `{"tenant":"acme","user":"jane@acme.com","permissions":["keys:create","keys:revoke","keys:roll","usage:read","audit:read"],"envs":["test","live"],"scopes":["patients:read","forms:write"],"return_url":"https://app.acme.com/settings"}`)["url"].(string)

	// The link: a session, then the keys.
	do(t, ctx, "open the portal link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("table.keys")))
	if loc := run(t, ctx, "location", chromedp.Location()); loc != k.portal+"/portal/" {
		t.Fatalf("after the link: %s, want %s/portal/", loc, k.portal)
	}
	page := run(t, ctx, "keys page", chromedp.OuterHTML(chromedp.CSS("body")))
	for _, want := range []string{"Staging server", "Nightly export", older["prefix"].(string) + "…" + older["last4"].(string), "jane@acme.com", "Back to app.acme.com", "Cara API keys"} {
		if !strings.Contains(page, want) {
			t.Errorf("keys page lacks %q", want)
		}
	}
	if strings.Contains(page, "Globex key") {
		t.Error("keys page shows another tenant's key")
	}
	shot(t, ctx, "portal-keys")

	// Create: the secret is shown once, and works.
	do(t, ctx, "open the create form", chromedp.Click(chromedp.CSS(`a[href="/portal/keys/new"]`)), chromedp.WaitVisible(chromedp.ID("name")))
	if n := run(t, ctx, "labels", chromedp.Evaluate[int](unlabelled)); n != 0 {
		t.Errorf("%d form fields without a label", n)
	}
	do(t, ctx, "fill the form", chromedp.SendKeys(chromedp.ID("name"), "Production server"),
		chromedp.Click(chromedp.CSS(`input[name=env][value=test]`)), chromedp.Click(chromedp.CSS(`input[name=scopes][value="patients:read"]`)))
	shot(t, ctx, "portal-create")
	do(t, ctx, "create", chromedp.Submit(chromedp.ID("name")), chromedp.WaitVisible(chromedp.ID("secret")))
	secret := run(t, ctx, "secret", chromedp.Value(chromedp.ID("secret")))
	warning := run(t, ctx, "warning", chromedp.Text(chromedp.CSS(".alert.warning")))
	if !strings.HasPrefix(secret, "sk_test_") || !strings.Contains(warning, "will not be shown again") {
		t.Fatalf("secret %q, warning %q", secret, warning)
	}
	do(t, ctx, "copy", chromedp.Click(chromedp.CSS("button[data-copy]")), chromedp.WaitVisible(chromedp.CSS("[data-copied]")))
	shot(t, ctx, "portal-secret")
	k.eventually(secret, http.StatusOK)

	do(t, ctx, "back to the list", chromedp.Click(chromedp.CSS(`a.button[href="/portal/"]`)), chromedp.WaitVisible(chromedp.CSS("table.keys")))
	page = run(t, ctx, "keys page", chromedp.OuterHTML(chromedp.CSS("html")))
	if strings.Contains(page, secret) || !strings.Contains(page, "Production server") {
		t.Fatal("the list shows the secret again, or not the new key")
	}

	// Revoke, after a confirmation; the key stops working.
	do(t, ctx, "open the new key", chromedp.Click(chromedp.Search(`//a[text()="Production server"]`)), chromedp.WaitVisible(chromedp.CSS("a.button.danger")))
	do(t, ctx, "revoke", chromedp.Click(chromedp.CSS("a.button.danger")), chromedp.WaitVisible(chromedp.CSS("form button.danger")))
	if k.check(secret) != http.StatusOK {
		t.Fatal("the confirmation page revoked the key already")
	}
	shot(t, ctx, "portal-revoke")
	do(t, ctx, "confirm", chromedp.Click(chromedp.CSS("form button.danger")), chromedp.WaitVisible(chromedp.CSS(".status-revoked")))
	k.eventually(secret, http.StatusUnauthorized)

	// Roll the older key with a grace: both work, the new one is shown once.
	do(t, ctx, "open the older key", chromedp.Navigate(k.portal+"/portal/keys/"+older["id"].(string)), chromedp.WaitVisible(chromedp.CSS(`a[href$="/roll"]`)))
	shot(t, ctx, "portal-key")
	do(t, ctx, "roll", chromedp.Click(chromedp.CSS(`a[href$="/roll"]`)), chromedp.WaitVisible(chromedp.ID("grace")))
	do(t, ctx, "choose a grace", chromedp.SetValue(chromedp.ID("grace"), "1h"))
	shot(t, ctx, "portal-roll")
	do(t, ctx, "confirm the roll", chromedp.Submit(chromedp.ID("grace")), chromedp.WaitVisible(chromedp.ID("secret")))
	rolled := run(t, ctx, "rolled secret", chromedp.Value(chromedp.ID("secret")))
	facts := run(t, ctx, "facts", chromedp.Text(chromedp.CSS("dl.facts")))
	if !strings.HasPrefix(rolled, "sk_test_") || !strings.Contains(facts, "keeps working until") {
		t.Fatalf("roll: %q %q", rolled, facts)
	}
	k.eventually(rolled, http.StatusOK)
	if k.check(older["key"].(string)) != http.StatusOK {
		t.Error("the rolled key stopped working inside its grace")
	}

	// The tenant's audit trail names the portal user.
	do(t, ctx, "activity", chromedp.Click(chromedp.CSS(`nav a[href="/portal/audit"]`)), chromedp.WaitVisible(chromedp.CSS("table.audit")))
	audit := run(t, ctx, "activity", chromedp.Text(chromedp.CSS("table.audit")))
	for _, want := range []string{"key.rolled", "key.revoked", "key.created", "jane@acme.com (portal)"} {
		if !strings.Contains(audit, want) {
			t.Errorf("activity lacks %q", want)
		}
	}
	shot(t, ctx, "portal-audit")

	// At 375 px the keys are cards, reachable without sideways scrolling.
	do(t, ctx, "narrow", chromedp.EmulateViewport(375, 800), chromedp.Navigate(k.portal+"/portal/"), chromedp.WaitVisible(chromedp.CSS("table.keys")))
	if w := run(t, ctx, "width", chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 375 {
		t.Errorf("at 375 px the page is %d px wide", w)
	}
	shot(t, ctx, "portal-mobile")

	// Signing out ends the session: the link cannot be used again.
	do(t, ctx, "sign out", chromedp.EmulateViewport(1200, 900), chromedp.Click(chromedp.CSS("form button.link")), chromedp.WaitVisible(chromedp.CSS(".alert.notice")))
	do(t, ctx, "the used link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(".alert.error")))
	if msg := run(t, ctx, "used link", chromedp.Text(chromedp.CSS(".alert.error"))); !strings.Contains(msg, "used already") {
		t.Errorf("used link: %q", msg)
	}
}

// TestBrowserConsole: an operator signs in with a named token; a viewer
// sees no change buttons and the server refuses the change it tries.
func TestBrowserConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the browser test (it needs chromium)")
	}
	k := startKeygate(t)
	ctx := browser(t)
	key := k.adminPost("/admin/v1/keys", `{"tenant":"acme","name":"Staging server","env":"test","scopes":["patients:read"]}`)
	k.adminPost("/admin/v1/keys", `{"tenant":"globex","name":"Globex backend","env":"live"}`)
	k.adminPost("/admin/v1/grants", `{"tenant":"acme","org":"clinic-1","scopes":["patients:read"]}`)
	id := key["id"].(string)

	do(t, ctx, "sign-in page", chromedp.Navigate(k.http+"/console/"), chromedp.WaitVisible(chromedp.ID("token")))
	shot(t, ctx, "console-login")
	do(t, ctx, "sign in as the viewer", chromedp.SendKeys(chromedp.ID("token"), browserViewerToken), chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS("table.keys")))
	do(t, ctx, "a key", chromedp.Navigate(k.http+"/console/keys/"+id), chromedp.WaitVisible(chromedp.CSS("dl.facts")))
	if html := run(t, ctx, "key page", chromedp.OuterHTML(chromedp.CSS("main"))); strings.Contains(html, "Revoke key") || strings.Contains(html, "Roll key") {
		t.Error("the viewer is shown change buttons")
	}
	// The viewer's browser posts the change anyway (same origin): refused.
	status := run(t, ctx, "viewer revoke", chromedp.Evaluate[int](`fetch("/console/keys/`+id+`/revoke", {method: "POST"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != http.StatusForbidden {
		t.Errorf("viewer's revoke: %d, want 403", status)
	}
	if k.check(key["key"].(string)) != http.StatusOK {
		t.Fatal("the viewer's refused revoke stopped the key")
	}
	do(t, ctx, "sign out", chromedp.Click(chromedp.CSS("form button.link")), chromedp.WaitVisible(chromedp.ID("token")))

	do(t, ctx, "sign in as admin", chromedp.SendKeys(chromedp.ID("token"), browserAdminToken), chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS("table.keys")))
	keys := run(t, ctx, "keys", chromedp.Text(chromedp.CSS("table.keys")))
	if !strings.Contains(keys, "Globex backend") || !strings.Contains(keys, "Staging server") {
		t.Errorf("console keys lack a tenant's: %q", keys)
	}
	shot(t, ctx, "console-keys")
	do(t, ctx, "grants", chromedp.Click(chromedp.CSS(`nav a[href="/console/grants"]`)), chromedp.WaitVisible(chromedp.CSS("table.grants")))
	shot(t, ctx, "console-grants")
	do(t, ctx, "audit", chromedp.Click(chromedp.CSS(`nav a[href="/console/audit"]`)), chromedp.WaitVisible(chromedp.CSS("table.audit")))
	shot(t, ctx, "console-audit")
	do(t, ctx, "portal form", chromedp.Click(chromedp.CSS(`nav a[href="/console/portal"]`)), chromedp.WaitVisible(chromedp.ID("tenant")),
		chromedp.SendKeys(chromedp.ID("tenant"), "acme"), chromedp.SendKeys(chromedp.ID("scopes"), "patients:read"),
		chromedp.Submit(chromedp.ID("tenant")), chromedp.WaitVisible(chromedp.CSS("a[data-portal-link]")))
	shot(t, ctx, "console-portal")
	href := run(t, ctx, "portal link", chromedp.AttributeValue(chromedp.CSS("a[data-portal-link]"), "href"))
	do(t, ctx, "see what acme's users see", chromedp.Navigate(href.Value), chromedp.WaitVisible(chromedp.CSS("table.keys")))
	if who := run(t, ctx, "who", chromedp.Text(chromedp.CSS(".who"))); !strings.Contains(who, "default") {
		t.Errorf("portal opened by the console signed in %q", who)
	}
}
