package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// signIn posts an admin token to the console's sign-in form and returns
// the session cookie (nil when refused) and the answer.
func (e *env) signIn(token string) (*http.Cookie, *http.Response) {
	e.t.Helper()
	r := noRedirect(e.t, "POST", e.console.URL+"/console/login", url.Values{"token": {token}}.Encode(), form())
	for _, c := range r.Cookies() {
		if c.Name == ConsoleCookie {
			return c, r
		}
	}
	return nil, r
}

func TestConsoleSignIn(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	if r := noRedirect(t, "GET", e.console.URL+"/console/", "", nil); r.StatusCode != 200 || !strings.Contains(bodyOf(r), `<label for="token">Admin token</label>`) {
		t.Fatalf("sign-in page: %d", r.StatusCode)
	}
	for _, bad := range []string{"", "kgadm_wrong", adminToken + " x"} {
		if c, r := e.signIn(bad); c != nil || r.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: %d %v", bad, r.StatusCode, c)
		}
	}
	c, r := e.signIn(adminToken)
	if c == nil || r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/console/" {
		t.Fatalf("sign in: %d %v", r.StatusCode, c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/console" || c.Value == adminToken {
		t.Errorf("cookie %+v", c)
	}
	k := e.createAs("acme")
	page := noRedirect(t, "GET", e.console.URL+"/console/", "", nil, c)
	if b := bodyOf(page); page.StatusCode != 200 || !strings.Contains(b, k.ID) || !strings.Contains(b, "ops (admin)") {
		t.Fatalf("keys page: %d", page.StatusCode)
	}
	h := page.Header
	if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", h)
	}
	// A cross-origin sign-in or change is refused.
	cross := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Sec-Fetch-Site": {"cross-site"}}
	if r := noRedirect(t, "POST", e.console.URL+"/console/login", "token="+adminToken, cross); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d", r.StatusCode)
	}
	if r := noRedirect(t, "POST", e.console.URL+"/console/keys/"+k.ID+"/revoke", "", cross, c); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site revoke: %d", r.StatusCode)
	}
	// An admin token is no session: the console knows its cookie only.
	if r := noRedirect(t, "GET", e.console.URL+"/console/audit", "", http.Header{"Authorization": {"Bearer " + adminToken}}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("bearer on the console: %d", r.StatusCode)
	}
	if r := noRedirect(t, "POST", e.console.URL+"/console/keys/"+k.ID+"/revoke", "", form(), c); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("admin revoke: %d %s", r.StatusCode, bodyOf(r))
	}
	evs, _, _ := e.svc.Audit(context.Background(), admin.AuditRequest{KeyID: k.ID, Action: store.ActionKeyRevoked})
	if len(evs) != 1 || evs[0].Actor != (store.Actor{Type: store.ActorOperator, Name: "ops"}) {
		t.Errorf("revoke audited as %+v", evs)
	}
	lo := noRedirect(t, "POST", e.console.URL+"/console/logout", "", form(), c)
	if lo.StatusCode != http.StatusSeeOther {
		t.Errorf("logout %d", lo.StatusCode)
	}
	if r := noRedirect(t, "GET", e.console.URL+"/console/audit", "", nil, c); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("after logout: %d", r.StatusCode)
	}
}

// TestConsoleViewer: a viewer sees every page, no change button, and is
// refused every change.
func TestConsoleViewer(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	k := e.createAs("acme")
	if _, err := e.svc.SetGrant(context.Background(), "acme", "clinic-1", nil); err != nil {
		t.Fatal(err)
	}
	c, _ := e.signIn(viewerToken)
	if c == nil {
		t.Fatal("viewer could not sign in")
	}
	for _, path := range []string{"/console/", "/console/?tenant=acme", "/console/keys/" + k.ID, "/console/grants", "/console/audit", "/console/portal"} {
		r := noRedirect(t, "GET", e.console.URL+path, "", nil, c)
		b := bodyOf(r)
		if r.StatusCode != http.StatusOK {
			t.Errorf("viewer GET %s: %d", path, r.StatusCode)
		}
		for _, button := range []string{"Revoke key", "Roll key", "Revoke grant", "Open portal session"} {
			if strings.Contains(b, button) {
				t.Errorf("viewer GET %s shows %q", path, button)
			}
		}
	}
	for _, rt := range []struct{ path, body string }{
		{"/console/keys/" + k.ID + "/revoke", ""},
		{"/console/keys/" + k.ID + "/roll", "grace=24h"},
		{"/console/grants/acme/clinic-1/revoke", ""},
		{"/console/portal", "tenant=acme&user=auditor"},
	} {
		r := noRedirect(t, "POST", e.console.URL+rt.path, rt.body, form(), c)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(bodyOf(r), "may not") {
			t.Errorf("viewer POST %s: %d, want 403", rt.path, r.StatusCode)
		}
	}
	if got, _ := e.svc.Show(context.Background(), k.ID); got.Status(time.Now()) != keys.StatusActive || got.ReplacedBy != "" {
		t.Errorf("the key after the viewer's attempts: %+v", got)
	}
	if gs, _ := e.svc.ListGrants(context.Background(), "acme"); len(gs) != 1 {
		t.Errorf("the grant after the viewer's attempt: %v", gs)
	}
}

// TestConsoleOpensPortal: an admin opens a tenant's portal; the link
// works once on the portal.
func TestConsoleOpensPortal(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	c, _ := e.signIn(adminToken)
	r := noRedirect(t, "POST", e.console.URL+"/console/portal", "tenant=acme&user=ops&scopes=patients:read,+forms:write", form(), c)
	b := bodyOf(r)
	i := strings.Index(b, e.portal.URL+"/portal/session/")
	if r.StatusCode != http.StatusCreated || i < 0 {
		t.Fatalf("open portal: %d %s", r.StatusCode, b)
	}
	link := b[i : i+strings.IndexByte(b[i:], '"')]
	pc := e.cookie(link)
	list := noRedirect(t, "GET", e.portal.URL+"/portal/keys/new", "", nil, pc)
	if lb := bodyOf(list); list.StatusCode != 200 || !strings.Contains(lb, "forms:write") || !strings.Contains(lb, "patients:read") {
		t.Errorf("portal opened by the console: %d", list.StatusCode)
	}
	if r := noRedirect(t, "POST", e.console.URL+"/console/portal", "tenant=&user=ops", form(), c); r.StatusCode != 400 || !strings.Contains(bodyOf(r), "tenant: required") {
		t.Errorf("no tenant: %d", r.StatusCode)
	}
}

// TestConsoleLink: the one-time link signs in from loopback only, once.
func TestConsoleLink(t *testing.T) {
	e := newEnv(t, PortalConfig{})
	link, err := e.cons.LoginLink(context.Background(), e.console.URL)
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(link, e.console.URL)
	remote := httptest.NewRequest("GET", path, nil)
	remote.RemoteAddr = "203.0.113.9:4000"
	rec := httptest.NewRecorder()
	e.cons.ServeHTTP(rec, remote)
	if rec.Code != http.StatusForbidden || len(rec.Result().Cookies()) != 0 {
		t.Errorf("link from a remote client: %d", rec.Code)
	}
	r := noRedirect(t, "GET", link, "", nil) // httptest listens on 127.0.0.1
	if r.StatusCode != http.StatusSeeOther || len(r.Cookies()) != 1 {
		t.Fatalf("link from loopback: %d", r.StatusCode)
	}
	if p := noRedirect(t, "GET", e.console.URL+"/console/", "", nil, r.Cookies()[0]); !strings.Contains(bodyOf(p), "local (admin)") {
		t.Error("the link did not sign in the local admin")
	}
	if again := noRedirect(t, "GET", link, "", nil); again.StatusCode != http.StatusNotFound || len(again.Cookies()) != 0 {
		t.Errorf("second use: %d", again.StatusCode)
	}
}
