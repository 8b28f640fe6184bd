package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// TestRolesOnEveryRoute: a viewer reads everything and changes nothing, a
// portal token does neither, an admin does both; a refusal is 403
// forbidden and changes nothing.
func TestRolesOnEveryRoute(t *testing.T) {
	a := newAPI(t)
	_, _, body := a.do("POST", "/admin/v1/keys", `{"tenant":"acme","scopes":["patients:read"]}`)
	id, _ := body["id"].(string)
	writes := []struct{ method, path, body string }{
		{"POST", "/admin/v1/keys", `{"tenant":"acme"}`},
		{"POST", "/admin/v1/keys/import", `{"sha256":"` + strings.Repeat("ab", 32) + `","prefix":"sk_live_","tenant":"acme"}`},
		{"POST", "/admin/v1/keys/" + id + "/revoke", ``},
		{"DELETE", "/admin/v1/keys/" + id, ``},
		{"POST", "/admin/v1/keys/" + id + "/roll", `{}`},
		{"POST", "/admin/v1/keys/" + id + "/expiry", `{"expires_in":"30d"}`},
		{"POST", "/admin/v1/grants", `{"tenant":"acme","org":"clinic-1","scopes":[]}`},
		{"PUT", "/admin/v1/grants/acme/clinic-1", `{"scopes":[]}`},
		{"DELETE", "/admin/v1/grants/acme/clinic-1", ``},
	}
	reads := []string{"/admin/v1/keys", "/admin/v1/keys/" + id, "/admin/v1/grants", "/admin/v1/audit",
		"/admin/v1/keys/" + id + "/usage", "/admin/v1/tenants/acme/usage"}
	before := a.events()
	for _, w := range writes {
		for _, tok := range []string{viewerToken, portalToken} {
			status, _, b := a.doAs(tok, w.method, w.path, w.body)
			if code, msg := errorOf(b); status != http.StatusForbidden || code != "forbidden" || !strings.Contains(msg, "may not") {
				t.Errorf("%s %s %s as %s: %d %s %q, want 403 forbidden", w.method, w.path, w.body, tok, status, code, msg)
			}
		}
	}
	for _, path := range reads {
		if status, _, b := a.doAs(viewerToken, "GET", path, ""); status != http.StatusOK {
			t.Errorf("GET %s as viewer: %d %v", path, status, b)
		}
		if status, _, _ := a.doAs(portalToken, "GET", path, ""); status != http.StatusForbidden {
			t.Errorf("GET %s as the portal token: %d, want 403", path, status)
		}
	}
	if after := a.events(); len(after) != len(before) {
		t.Fatalf("refused requests wrote %d audit events", len(after)-len(before))
	}
	if rec, err := a.svc.Show(context.Background(), id); err != nil || rec.Status(time.Now()) != keys.StatusActive {
		t.Fatalf("the key after refused writes: %v %v", rec.Status(time.Now()), err)
	}
	for _, w := range writes {
		if status, _, b := a.do(w.method, w.path, w.body); status >= 300 && status != http.StatusConflict && status != http.StatusNotFound && status != http.StatusBadRequest {
			t.Errorf("%s %s as admin: %d %v", w.method, w.path, status, b)
		}
	}
}

// TestAuditNamesTheToken: each change made through the API is an event
// with the token's name, the client's address and the request id.
func TestAuditNamesTheToken(t *testing.T) {
	a := newAPI(t)
	_, _, body := a.doReq("POST", "/admin/v1/keys", `{"tenant":"acme"}`, testToken, "req-abc")
	id := body["id"].(string)
	a.do("POST", "/admin/v1/keys/"+id+"/revoke", "")
	status, _, page := a.do("GET", "/admin/v1/audit?key_id="+id, "")
	evs, _ := page["events"].([]any)
	if status != http.StatusOK || len(evs) != 2 {
		t.Fatalf("audit: %d %v", status, page)
	}
	first := evs[1].(map[string]any)
	actor := first["actor"].(map[string]any)
	if first["action"] != "key.created" || actor["type"] != "admin_token" || actor["name"] != "default" ||
		first["request_id"] != "req-abc" || first["source_ip"] != "192.0.2.1" || first["tenant"] != "acme" {
		t.Fatalf("event %v", first)
	}
	if evs[0].(map[string]any)["action"] != "key.revoked" {
		t.Fatalf("newest first: %v", evs[0])
	}
}

func TestAuditAPI(t *testing.T) {
	a := newAPI(t)
	for i := range 5 {
		a.do("POST", "/admin/v1/keys", fmt.Sprintf(`{"tenant":"t%d"}`, i%2))
	}
	var ids []string
	next := ""
	for {
		path := "/admin/v1/audit?limit=2"
		if next != "" {
			path += "&after=" + next
		}
		status, _, page := a.do("GET", path, "")
		if status != http.StatusOK {
			t.Fatalf("%s: %d %v", path, status, page)
		}
		for _, e := range page["events"].([]any) {
			ids = append(ids, e.(map[string]any)["id"].(string))
		}
		next, _ = page["next"].(string)
		if next == "" {
			break
		}
	}
	if len(ids) != 5 {
		t.Fatalf("paged %d events, want 5: %v", len(ids), ids)
	}
	cases := []struct {
		query  string
		status int
		n      int
		msg    string
	}{
		{"tenant=t1", 200, 2, ""},
		{"action=key.created&since=1h", 200, 5, ""},
		{"since=2099-01-01T00:00:00Z", 200, 0, ""},
		{"action=key.exploded", 400, 0, "action"},
		{"after=evt_nope", 400, 0, "after"},
		{"limit=0", 400, 0, "limit"},
		{"limit=5000", 400, 0, "limit"},
		{"since=yesterday", 400, 0, "since"},
	}
	for _, c := range cases {
		status, _, page := a.do("GET", "/admin/v1/audit?"+c.query, "")
		if status != c.status {
			t.Errorf("%s: %d %v, want %d", c.query, status, page, c.status)
			continue
		}
		if c.status == 200 && len(page["events"].([]any)) != c.n {
			t.Errorf("%s: %d events, want %d", c.query, len(page["events"].([]any)), c.n)
		}
		if _, msg := errorOf(page); c.msg != "" && !strings.HasPrefix(msg, c.msg+":") {
			t.Errorf("%s: message %q should name %s", c.query, msg, c.msg)
		}
	}
}

// TestPortalSessionBounds: a portal principal sees one tenant; another
// tenant's key is not found through every method, and creation is bound
// by the session's envs and scopes.
func TestPortalSessionBounds(t *testing.T) {
	svc := newService(t, nil)
	sys := context.Background()
	other, err := svc.Create(sys, CreateRequest{Tenant: "beta", Scopes: []string{"patients:read"}})
	if err != nil {
		t.Fatal(err)
	}
	p := Principal{Actor: store.Actor{Type: store.ActorPortal, Name: "jane@acme.com"}, Tenant: "acme",
		Perms: []Permission{PermKeysCreate, PermKeysRevoke, PermKeysRoll}, Envs: []keys.Env{keys.EnvTest}, Scopes: []string{"patients:read"}}
	ctx := WithCaller(sys, p, "198.51.100.4", "req-p")
	id := other.Record.ID
	checks := map[string]error{}
	_, checks["show"] = svc.Show(ctx, id)
	_, checks["revoke"] = svc.Revoke(ctx, id)
	_, _, checks["roll"] = svc.Roll(ctx, id, 0)
	for name, err := range checks {
		if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), id) {
			t.Errorf("%s of another tenant's key: %v, want not found", name, err)
		}
	}
	if rs, _, err := svc.List(ctx, ListRequest{Tenant: "beta"}); err != nil || len(rs) != 0 {
		t.Errorf("list asking for another tenant: %v %v", rs, err)
	}
	if _, err := svc.Create(ctx, CreateRequest{Tenant: "beta"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("create for another tenant: %v", err)
	}
	if _, err := svc.Create(ctx, CreateRequest{Env: keys.EnvLive}); !errors.Is(err, ErrForbidden) {
		t.Errorf("create a live key in a test-only session: %v", err)
	}
	if _, err := svc.Create(ctx, CreateRequest{Scopes: []string{"patients:write"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("create with a scope outside the session: %v", err)
	}
	if _, err := svc.Import(ctx, ImportRequest{Tenant: "acme"}); !errors.Is(err, ErrForbidden) {
		t.Errorf("import from a portal session: %v", err)
	}
	c, err := svc.Create(ctx, CreateRequest{Name: "mine", Scopes: []string{"patients:read"}})
	if err != nil || c.Record.Tenant != "acme" || c.Record.Env != keys.EnvTest {
		t.Fatalf("create in the session: %+v %v", c.Record, err)
	}
	evs, _, err := svc.Audit(ctx, AuditRequest{Tenant: "beta"})
	if !errors.Is(err, ErrForbidden) {
		t.Fatalf("audit without audit:read: %v %v", evs, err)
	}
	evs, _, err = svc.Audit(sys, AuditRequest{KeyID: c.Record.ID})
	if err != nil || len(evs) != 1 || evs[0].Actor != (store.Actor{Type: store.ActorPortal, Name: "jane@acme.com"}) || evs[0].SourceIP != "198.51.100.4" {
		t.Fatalf("the portal user's event: %+v %v", evs, err)
	}
}

func TestTokensConfig(t *testing.T) {
	good := strings.Repeat("0f", 32)
	cases := []struct {
		name  string
		plain string
		list  []TokenConfig
		err   string
	}{
		{"none", "", nil, ""},
		{"plain only", "s3cret", nil, ""},
		{"named", "", []TokenConfig{{Name: "ci", SHA256: good, Role: "viewer"}}, ""},
		{"bad hash", "", []TokenConfig{{Name: "ci", SHA256: "abc", Role: "viewer"}}, "admin.tokens[0].sha256"},
		{"bad role", "", []TokenConfig{{Name: "ci", SHA256: good, Role: "root"}}, "admin.tokens[0].role"},
		{"bad name", "", []TokenConfig{{Name: "c i", SHA256: good, Role: "admin"}}, "admin.tokens[0].name"},
		{"duplicate of default", "x", []TokenConfig{{Name: "default", SHA256: good, Role: "admin"}}, "admin.tokens[0].name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewTokens(c.plain, c.list)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("NewTokens: %v, want %q", err, c.err)
			}
		})
	}
	tok, sum, err := NewAdminToken()
	if err != nil || !strings.HasPrefix(tok, AdminTokenPrefix) || len(sum) != 64 {
		t.Fatalf("NewAdminToken: %q %q %v", tok, sum, err)
	}
	ts, err := NewTokens("", []TokenConfig{{Name: "ops", SHA256: sum, Role: "admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := ts.Authenticate(tok); !ok || got.Name != "ops" {
		t.Fatalf("a fresh token does not authenticate: %+v %v", got, ok)
	}
	for _, bad := range []string{"", tok + "x", tok[:len(tok)-1], sum} {
		if _, ok := ts.Authenticate(bad); ok {
			t.Errorf("Authenticate(%q) accepted", bad)
		}
	}
}
