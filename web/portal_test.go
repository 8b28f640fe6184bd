package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

func TestPortalCode(t *testing.T) {
	for _, secure := range []bool{false, true} {
		e := newEnv(t, PortalConfig{Secure: secure})
		link := e.link(fullSession())
		if !strings.HasPrefix(link, e.portal.URL+"/portal/session/") {
			t.Fatalf("link %q", link)
		}
		resp := noRedirect(t, "GET", link, "", nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/portal/" {
			t.Fatalf("redeem: %d %q, want 303 to /portal/", resp.StatusCode, resp.Header.Get("Location"))
		}
		cs := resp.Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies %v", cs)
		}
		c := cs[0]
		if c.Name != "keygate_portal" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/portal" ||
			c.Secure != secure || c.MaxAge < 3590 || c.MaxAge > 3600 || strings.Contains(link, c.Value) {
			t.Errorf("cookie %+v (secure %v): want keygate_portal, HttpOnly, SameSite=Strict, Path=/portal, an hour, not the code", c, secure)
		}
		e.noSecretsLogged(link[strings.LastIndexByte(link, '/')+1:], c.Value)
		again := noRedirect(t, "GET", link, "", nil)
		if again.StatusCode != http.StatusNotFound || len(again.Cookies()) != 0 || !strings.Contains(bodyOf(again), "used already") {
			t.Errorf("second use: %d, cookies %v", again.StatusCode, again.Cookies())
		}
		if r := noRedirect(t, "GET", e.portal.URL+"/portal/", "", nil, c); r.StatusCode != http.StatusOK || !strings.Contains(bodyOf(r), "jane@acme.com") {
			t.Errorf("keys page with the cookie: %d", r.StatusCode)
		}
	}
	e := newEnv(t, PortalConfig{})
	for _, code := range []string{"nope", strings.Repeat("A", 65), "%2e%2e%2fadmin"} {
		r := noRedirect(t, "GET", e.portal.URL+"/portal/session/"+code, "", nil)
		if r.StatusCode != http.StatusNotFound || len(r.Cookies()) != 0 {
			t.Errorf("code %q: %d %v", code, r.StatusCode, r.Cookies())
		}
	}
	// A code expires after session_code_ttl; a session after session_ttl.
	now := time.Now()
	e.now.Store(now.UnixNano())
	link := e.link(fullSession())
	e.now.Store(now.Add(15 * time.Minute).UnixNano())
	if r := noRedirect(t, "GET", link, "", nil); r.StatusCode != http.StatusNotFound || len(r.Cookies()) != 0 {
		t.Errorf("expired code: %d %v", r.StatusCode, r.Cookies())
	}
	e.now.Store(now.UnixNano())
	c := e.cookie(e.link(fullSession()))
	e.now.Store(now.Add(time.Hour).UnixNano())
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys", "", nil, c); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired session: %d", r.StatusCode)
	}
}

// TestPortalNoAdminToken: the portal listener knows its cookie only.
func TestPortalNoAdminToken(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	e.createAs("acme")
	bearer := http.Header{"Authorization": {"Bearer " + adminToken}, "Content-Type": {"application/json"}}
	for _, rt := range []struct{ method, path string }{
		{"GET", "/portal/api/v1/keys"}, {"POST", "/portal/api/v1/keys"}, {"GET", "/portal/api/v1/audit"},
		{"GET", "/portal/"}, {"GET", "/admin/v1/keys"},
	} {
		r := noRedirect(t, rt.method, e.portal.URL+rt.path, `{"tenant":"acme"}`, bearer)
		if r.StatusCode != http.StatusUnauthorized && r.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s with an admin token: %d, want 401 (or 404 off the portal)", rt.method, rt.path, r.StatusCode)
		}
	}
	forged := &http.Cookie{Name: PortalCookie, Value: strings.Repeat("x", 65)}
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys", "", nil, forged); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("forged cookie: %d", r.StatusCode)
	}
}

func TestPortalHeaders(t *testing.T) {
	for _, tc := range []struct{ frame, want string }{
		{"", "frame-ancestors 'none'"},
		{"'self' https://app.acme.com", "frame-ancestors 'self' https://app.acme.com"},
	} {
		e := newEnv(t, PortalConfig{FrameAncestors: tc.frame, Branding: Branding{Title: "Acme", LogoURL: "https://cdn.acme.com/logo.svg", AccentColor: "#123"}})
		c := e.cookie(e.link(fullSession()))
		k := e.createAs("acme")
		for _, path := range []string{"/portal/", "/portal/keys/new", "/portal/keys/" + k.ID, "/portal/audit", "/portal/api/v1/keys",
			"/portal/static/app.js", "/portal/static/brand.css", "/portal/nope", "/portal/session/used"} {
			r := noRedirect(t, "GET", e.portal.URL+path, "", nil, c)
			h := r.Header
			csp := h.Get("Content-Security-Policy")
			if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, tc.want) ||
				!strings.Contains(csp, "img-src 'self' data: https://cdn.acme.com") ||
				h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" {
				t.Errorf("GET %s: headers %v", path, h)
			}
			if strings.HasSuffix(path, ".js") || strings.HasSuffix(path, ".css") {
				continue
			}
			if b := bodyOf(r); strings.Contains(b, "<script>") || strings.Contains(b, " on") && strings.Contains(b, "onclick=") || strings.Contains(b, "style=") {
				t.Errorf("GET %s: inline script or style in the page", path)
			}
		}
		if b := bodyOf(noRedirect(t, "GET", e.portal.URL+"/portal/static/brand.css", "", nil)); b != ":root{--accent:#123}\n" {
			t.Errorf("brand.css %q", b)
		}
	}
}

// TestPortalCrossOrigin: an unsafe request from another origin is 403
// and changes nothing, through the API and the forms.
func TestPortalCrossOrigin(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	c := e.cookie(e.link(fullSession()))
	mine := createVia(t, e, c)
	for _, h := range []http.Header{
		{"Sec-Fetch-Site": {"cross-site"}, "Content-Type": {"application/json"}},
		{"Origin": {"https://evil.example"}, "Content-Type": {"application/json"}},
		{"Sec-Fetch-Site": {"same-site"}, "Content-Type": {"application/x-www-form-urlencoded"}},
	} {
		for _, rt := range []struct{ path, body string }{
			{"/portal/api/v1/keys", `{"name":"x"}`},
			{"/portal/api/v1/keys/" + mine + "/revoke", ``},
			{"/portal/api/v1/keys/" + mine + "/roll", `{"grace":"1h"}`},
			{"/portal/keys", `name=x&env=test`},
			{"/portal/keys/" + mine + "/revoke", ``},
			{"/portal/keys/" + mine + "/roll", `grace=1h`},
			{"/portal/api/v1/logout", ``},
		} {
			r := noRedirect(t, "POST", e.portal.URL+rt.path, rt.body, h, c)
			if r.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %v: %d, want 403", rt.path, h, r.StatusCode)
			}
		}
	}
	rs, _, _ := e.svc.List(context.Background(), admin.ListRequest{Tenant: "acme", IncludeRevoked: true})
	if len(rs) != 1 || rs[0].Status(time.Now()) != keys.StatusActive || rs[0].ReplacedBy != "" {
		t.Fatalf("cross-origin posts changed keys: %+v", rs)
	}
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys", "", nil, c); r.StatusCode != http.StatusOK {
		t.Errorf("the session after a cross-origin logout: %d", r.StatusCode)
	}
}

// createVia creates a key through the portal's API and returns its id.
func createVia(t *testing.T, e *env, c *http.Cookie) string {
	t.Helper()
	r := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/keys", `{"name":"ci","env":"test","scopes":["patients:read"]}`, jsonPost(), c)
	b := jsonOf(t, r)
	if r.StatusCode != http.StatusCreated || b["tenant"] != "acme" || !strings.HasPrefix(b["key"].(string), "sk_test_") {
		t.Fatalf("create: %d %v", r.StatusCode, b)
	}
	return b["id"].(string)
}

// TestPortalTenantIsolation: another tenant's key is 404 through every
// route, and unchanged.
func TestPortalTenantIsolation(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	c := e.cookie(e.link(fullSession()))
	theirs := e.createAs("globex")
	createVia(t, e, c)
	for _, rt := range []struct{ method, path, body string }{
		{"GET", "/portal/api/v1/keys/" + theirs.ID, ""},
		{"GET", "/portal/api/v1/keys/" + theirs.ID + "/usage", ""},
		{"POST", "/portal/api/v1/keys/" + theirs.ID + "/revoke", ""},
		{"POST", "/portal/api/v1/keys/" + theirs.ID + "/roll", `{"grace":"24h"}`},
		{"GET", "/portal/keys/" + theirs.ID, ""},
		{"GET", "/portal/keys/" + theirs.ID + "/revoke", ""},
		{"POST", "/portal/keys/" + theirs.ID + "/revoke", ""},
		{"GET", "/portal/keys/" + theirs.ID + "/roll", ""},
		{"POST", "/portal/keys/" + theirs.ID + "/roll", "grace=24h"},
		{"POST", "/portal/api/v1/keys", `{"tenant":"globex","name":"x"}`},
	} {
		h := jsonPost()
		if !strings.Contains(rt.path, "/api/") {
			h = form()
		}
		r := noRedirect(t, rt.method, e.portal.URL+rt.path, rt.body, h, c)
		if b := bodyOf(r); r.StatusCode != http.StatusNotFound || strings.Contains(b, "theirs") {
			t.Errorf("%s %s: %d, want 404 as if absent", rt.method, rt.path, r.StatusCode)
		}
	}
	list := jsonOf(t, noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys?tenant=globex", "", nil, c))
	ks := list["keys"].([]any)
	if len(ks) != 1 || ks[0].(map[string]any)["tenant"] != "acme" {
		t.Errorf("list (asking for globex): %v", ks)
	}
	if b := bodyOf(noRedirect(t, "GET", e.portal.URL+"/portal/", "", nil, c)); strings.Contains(b, theirs.ID) {
		t.Error("the keys page lists another tenant's key")
	}
	audit := jsonOf(t, noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/audit?tenant=globex", "", nil, c))
	for _, ev := range audit["events"].([]any) {
		if ev.(map[string]any)["tenant"] != "acme" {
			t.Errorf("audit shows %v", ev)
		}
	}
	if b := bodyOf(noRedirect(t, "GET", e.portal.URL+"/portal/audit", "", nil, c)); strings.Contains(b, theirs.ID) {
		t.Error("the activity page shows another tenant's event")
	}
	got, err := e.svc.Show(context.Background(), theirs.ID)
	if err != nil || got.Status(time.Now()) != keys.StatusActive || got.ReplacedBy != "" {
		t.Fatalf("their key after the attempts: %+v %v", got, err)
	}
}

// TestPortalPermissions: what the session was not given is 403; every
// action is audited as the portal user.
func TestPortalPermissions(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	full := e.cookie(e.link(fullSession()))
	id := createVia(t, e, full)
	ro := e.cookie(e.link(admin.PortalSessionRequest{Tenant: "acme", User: "reader@acme.com", Envs: []string{"test"}, Scopes: []string{"patients:read"}}))
	for _, rt := range []struct{ method, path, body string }{
		{"POST", "/portal/api/v1/keys", `{"name":"x"}`},
		{"POST", "/portal/api/v1/keys/" + id + "/revoke", ""},
		{"POST", "/portal/api/v1/keys/" + id + "/roll", ""},
		{"GET", "/portal/api/v1/audit", ""},
		{"GET", "/portal/audit", ""},
		{"GET", "/portal/keys/new", ""},
		{"POST", "/portal/keys", "name=x&env=test"},
	} {
		h := jsonPost()
		if !strings.Contains(rt.path, "/api/") {
			h = form()
		}
		if r := noRedirect(t, rt.method, e.portal.URL+rt.path, rt.body, h, ro); r.StatusCode != http.StatusForbidden {
			t.Errorf("read-only session: %s %s: %d, want 403", rt.method, rt.path, r.StatusCode)
		}
	}
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys/"+id, "", nil, ro); r.StatusCode != http.StatusOK {
		t.Errorf("reading is always allowed: %d", r.StatusCode)
	}
	testOnly := e.cookie(e.link(admin.PortalSessionRequest{Tenant: "acme", User: "t", Permissions: []string{"keys:create"}, Envs: []string{"test"}, Scopes: []string{"patients:read"}}))
	for _, tc := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"env":"live"}`, 403, "may not create live keys"},
		{`{"env":"test","scopes":["forms:write"]}`, 400, `scopes[0]: \"forms:write\" is not among`},
		{`{"env":"test","plan":"live"}`, 400, "plan: a portal session cannot choose a plan"},
		{`{"env":"test","nme":"x"}`, 400, "nme: unknown field"},
		{`{"env":"test","scopes":"patients:read"}`, 400, "scopes: must be a list of strings"},
	} {
		r := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/keys", tc.body, jsonPost(), testOnly)
		if b := bodyOf(r); r.StatusCode != tc.status || !strings.Contains(b, tc.want) {
			t.Errorf("create %s: %d %s, want %d %q", tc.body, r.StatusCode, b, tc.status, tc.want)
		}
	}
	if r := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/keys/"+id+"/roll", `{"grace":"soon"}`, jsonPost(), full); r.StatusCode != 400 ||
		!strings.Contains(bodyOf(r), "grace") {
		t.Errorf("roll with a bad grace: %d %s", r.StatusCode, bodyOf(r))
	}
	r := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/keys/"+id+"/roll", `{"grace":"24h"}`, jsonPost(), full)
	rolled := jsonOf(t, r)
	if r.StatusCode != http.StatusCreated || rolled["old"].(map[string]any)["replaced_by"] != rolled["id"] {
		t.Fatalf("roll: %d %v", r.StatusCode, rolled)
	}
	if r := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/keys/"+id+"/revoke", "", jsonPost(), full); r.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.StatusCode, bodyOf(r))
	}
	evs, _, err := e.svc.Audit(context.Background(), admin.AuditRequest{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, ev := range evs {
		if ev.Actor != (store.Actor{Type: "portal", Name: "jane@acme.com"}) {
			t.Errorf("event %s by %+v", ev.Action, ev.Actor)
		}
		actions = append(actions, ev.Action)
	}
	if want := []string{"key.revoked", "key.rolled", "key.created"}; !slices.Equal(actions, want) {
		t.Errorf("audit %v, want %v", actions, want)
	}
	e.noSecretsLogged(full.Value, ro.Value, testOnly.Value, rolled["key"].(string))
	// Logging out ends the session on the server, not only the cookie.
	lo := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/logout", "", jsonPost(), full)
	if lo.StatusCode != http.StatusOK || len(lo.Cookies()) != 1 || lo.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d %v", lo.StatusCode, lo.Cookies())
	}
	if r := noRedirect(t, "GET", e.portal.URL+"/portal/api/v1/keys", "", nil, full); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout: %d", r.StatusCode)
	}
}

// TestPortalBackLink: return_url becomes the "back to" link; the API
// refuses anything but http and https (admin tests), and the page checks
// again.
func TestPortalBackLink(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	c := e.cookie(e.link(fullSession()))
	b := bodyOf(noRedirect(t, "GET", e.portal.URL+"/portal/", "", nil, c))
	if !strings.Contains(b, `href="https://app.acme.com/settings"`) || !strings.Contains(b, "Back to app.acme.com") {
		t.Errorf("no back link in %s", b)
	}
	if _, err := url.Parse(e.portal.URL); err != nil {
		t.Fatal(err)
	}
}

// TestPortalCrossSiteArrival: a cross-site navigation carries no
// SameSite=Strict cookie, so the page it lands on offers (and the script
// follows) a same-site link to itself, which does; nothing else is done.
func TestPortalCrossSiteArrival(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	r := noRedirect(t, "GET", e.portal.URL+"/portal/", "", http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if b := bodyOf(r); r.StatusCode != http.StatusUnauthorized || !strings.Contains(b, `href="/portal/" data-autofollow`) {
		t.Errorf("cross-site arrival: %d %s", r.StatusCode, b)
	}
	r = noRedirect(t, "GET", e.portal.URL+"/portal/", "", http.Header{"Sec-Fetch-Site": {"same-origin"}})
	if b := bodyOf(r); r.StatusCode != http.StatusUnauthorized || strings.Contains(b, "data-autofollow") {
		t.Errorf("same-origin arrival without a session loops: %s", b)
	}
}

// TestPortalAllowedNetworks: a portal user may bind a new key to networks
// (form and JSON), sees them on the key's page, and may not set metadata,
// which the upstream trusts.
func TestPortalAllowedNetworks(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	c := e.cookie(e.link(fullSession()))
	r := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/keys", `{"env":"test","allowed_cidrs":["203.0.113.0/24","2001:db8::/32"]}`, jsonPost(), c)
	k := jsonOf(t, r)
	if r.StatusCode != http.StatusCreated || fmt.Sprint(k["allowed_cidrs"]) != "[203.0.113.0/24 2001:db8::/32]" {
		t.Fatalf("create with networks: %d %v", r.StatusCode, k)
	}
	page := bodyOf(noRedirect(t, "GET", e.portal.URL+"/portal/keys/"+k["id"].(string), "", nil, c))
	if !strings.Contains(page, "203.0.113.0/24, 2001:db8::/32") {
		t.Errorf("the key's page does not show its networks:\n%s", page)
	}
	if r := noRedirect(t, "POST", e.portal.URL+"/portal/keys", "name=x&env=test&allowed_cidrs=10.0.0.1", form(), c); r.StatusCode != 400 ||
		!strings.Contains(bodyOf(r), "is not a network in CIDR notation") {
		t.Errorf("form with a bare address: %d", r.StatusCode)
	}
	if r := noRedirect(t, "POST", e.portal.URL+"/portal/keys", "name=x&env=test&allowed_cidrs=10.0.0.0%2F8", form(), c); r.StatusCode != http.StatusCreated {
		t.Errorf("form with a network: %d %s", r.StatusCode, bodyOf(r))
	}
	if r := noRedirect(t, "POST", e.portal.URL+"/portal/api/v1/keys", `{"env":"test","metadata":{"team":"admins"}}`, jsonPost(), c); r.StatusCode != 400 ||
		!strings.Contains(bodyOf(r), "metadata: a portal session cannot set metadata") {
		t.Errorf("metadata from the portal: %d %s", r.StatusCode, bodyOf(r))
	}
}
