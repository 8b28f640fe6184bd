package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

const sessionBody = `{"tenant":"acme","user":"jane@acme.com","permissions":["keys:create","keys:revoke","keys:roll","usage:read","audit:read"],"envs":["test","live"],"scopes":["patients:read","forms:write"],"return_url":"https://app.acme.com/settings"}`

// codeOf is the code at the end of a portal link.
func codeOf(t *testing.T, url string) string {
	t.Helper()
	code, ok := strings.CutPrefix(url, "http://localhost:9092/portal/session/")
	if !ok || len(code) != tokenLen {
		t.Fatalf("portal link %q is not <public_url>/portal/session/<code>", url)
	}
	return code
}

func TestPortalSessionsAPI(t *testing.T) {
	a := newAPI(t)
	for _, tok := range []string{testToken, portalToken} {
		status, h, b := a.doAs(tok, "POST", "/admin/v1/portal/sessions", sessionBody)
		if status != http.StatusCreated || h.Get("Cache-Control") != "no-store" {
			t.Fatalf("as %s: %d %v", tok, status, b)
		}
		url, _ := b["url"].(string)
		codeOf(t, url)
		exp, err := time.Parse(time.RFC3339, b["expires_at"].(string))
		if err != nil || exp.Before(time.Now().Add(14*time.Minute)) || exp.After(time.Now().Add(16*time.Minute)) {
			t.Errorf("expires_at %v (%v), want in 15 minutes", b["expires_at"], err)
		}
	}
	if status, _, _ := a.doAs(viewerToken, "POST", "/admin/v1/portal/sessions", sessionBody); status != http.StatusForbidden {
		t.Errorf("as a viewer: %d, want 403", status)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"user":"j"}`, "tenant: required"},
		{`{"tenant":"a b","user":"j"}`, "tenant: "},
		{`{"tenant":"acme"}`, "user: required"},
		{`{"tenant":"acme","user":"j\u0000"}`, "user: contains control characters"},
		{`{"tenant":"acme","user":"j","permissions":["keys:create","grants:write"]}`, `permissions[1]: "grants:write" is not one of`},
		{`{"tenant":"acme","user":"j","permissions":["portal:sessions"]}`, `permissions[0]: "portal:sessions"`},
		{`{"tenant":"acme","user":"j","envs":["prod"]}`, `envs[0]: "prod" is not test or live`},
		{`{"tenant":"acme","user":"j","scopes":["PATIENTS"]}`, "scopes[0]: "},
		{`{"tenant":"acme","user":"j","return_url":"javascript:alert(1)"}`, "return_url: "},
		{`{"tenant":"acme","user":"j","return_url":"//evil.example"}`, "return_url: "},
		{`{"tenant":"acme","user":"j","return_url":"https://u:p@evil.example/"}`, "return_url: "},
		{`{"tenant":"acme","user":"j","permissions":"keys:create"}`, "permissions: must be a list of strings"},
		{`{"tenant":"acme","user":"j","admin":true}`, "admin: unknown field"},
		{``, "body: empty"},
	} {
		status, _, b := a.do("POST", "/admin/v1/portal/sessions", tc.body)
		if code, msg := errorOf(b); status != http.StatusBadRequest || code != "invalid_request" || !strings.HasPrefix(msg, tc.want) {
			t.Errorf("%s: %d %s %q, want 400 %q", tc.body, status, code, msg, tc.want)
		}
	}
}

func TestPortalCodeOnce(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	_, _, b := a.do("POST", "/admin/v1/portal/sessions", sessionBody)
	code := codeOf(t, b["url"].(string))
	token, ps, err := a.svc.RedeemPortalCode(ctx, code)
	if err != nil || ps.Tenant != "acme" || ps.User != "jane@acme.com" || ps.ReturnURL != "https://app.acme.com/settings" || len(ps.Permissions) != 5 {
		t.Fatalf("redeem: %+v %v", ps, err)
	}
	if token == code || len(token) != tokenLen {
		t.Fatalf("session token %q", token)
	}
	if _, _, err := a.svc.RedeemPortalCode(ctx, code); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second use of a code: %v, want not found", err)
	}
	got, err := a.svc.PortalSessionOf(ctx, token)
	if err != nil || got.Tenant != "acme" || time.Until(got.ExpiresAt) < 59*time.Minute {
		t.Fatalf("session: %+v %v", got, err)
	}
	p := got.Principal()
	if p.Actor != (store.Actor{Type: store.ActorPortal, Name: "jane@acme.com"}) || p.Tenant != "acme" || !p.Can(PermKeysRoll) || p.Can(PermGrantsRead) {
		t.Errorf("principal %+v", p)
	}
	for _, bad := range []string{"", code, token[:len(token)-1] + "A", strings.Repeat("A", tokenLen), token + "x", "../" + token[3:]} {
		if bad == token {
			continue
		}
		if _, err := a.svc.PortalSessionOf(ctx, bad); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("forged token %q: %v", bad, err)
		}
	}
	if err := a.svc.EndSession(ctx, store.SessionPortal, token); err != nil {
		t.Fatal(err)
	}
	if _, err := a.svc.PortalSessionOf(ctx, token); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after logout: %v", err)
	}
}

func TestPortalCodeExpires(t *testing.T) {
	a := newAPI(t)
	ctx := context.Background()
	now := time.Now()
	a.svc.cfg.Now = func() time.Time { return now }
	_, _, b := a.do("POST", "/admin/v1/portal/sessions", `{"tenant":"acme","user":"j"}`)
	code := codeOf(t, b["url"].(string))
	a.svc.cfg.Now = func() time.Time { return now.Add(15 * time.Minute) }
	if _, _, err := a.svc.RedeemPortalCode(ctx, code); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a code at its expiry: %v, want not found", err)
	}
	// A session lasts its TTL.
	a.svc.cfg.Now = func() time.Time { return now }
	_, _, b = a.do("POST", "/admin/v1/portal/sessions", `{"tenant":"acme","user":"j"}`)
	token, ps, err := a.svc.RedeemPortalCode(ctx, codeOf(t, b["url"].(string)))
	if err != nil || len(ps.Envs) != 2 || len(ps.Permissions) != 0 {
		t.Fatalf("redeem: %+v %v (no envs given: every configured one; no permissions: read only)", ps, err)
	}
	a.svc.cfg.Now = func() time.Time { return now.Add(time.Hour) }
	if _, err := a.svc.PortalSessionOf(ctx, token); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a session after session_ttl: %v", err)
	}
}

func TestConsoleSessions(t *testing.T) {
	svc := newService(t, nil)
	ctx := context.Background()
	op := Principal{Actor: store.Actor{Type: store.ActorOperator, Name: "ops"}, Role: RoleViewer}
	token, exp, err := svc.StartConsoleSession(ctx, op)
	if err != nil || time.Until(exp) < ConsoleSessionTTL-time.Minute {
		t.Fatal(exp, err)
	}
	if got, err := svc.ConsoleSessionOf(ctx, token); err != nil || got.Actor != op.Actor || got.Role != RoleViewer {
		t.Fatalf("%+v %v", got, err)
	}
	if _, err := svc.PortalSessionOf(ctx, token); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a console token opened a portal session: %v", err)
	}
	portalUser := Principal{Actor: store.Actor{Type: store.ActorPortal, Name: "j"}, Tenant: "acme", Envs: []keys.Env{keys.EnvTest}}
	if _, _, err := svc.StartConsoleSession(ctx, portalUser); err == nil {
		t.Error("a portal user started a console session")
	}
	code, err := svc.NewConsoleLink(ctx, Principal{Actor: store.Actor{Type: store.ActorOperator, Name: "local"}, Role: RoleAdmin})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ConsoleSessionOf(ctx, code); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a link's code used as a session: %v", err)
	}
	if p, err := svc.RedeemConsoleLink(ctx, code); err != nil || p.Role != RoleAdmin {
		t.Fatal(p, err)
	}
	if _, err := svc.RedeemConsoleLink(ctx, code); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a link used twice: %v", err)
	}
}
