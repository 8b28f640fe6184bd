package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// The test API's tokens: admin.token (named "default", role admin) and
// two named tokens of admin.tokens.
const (
	testToken   = "test-admin-token"
	viewerToken = "test-viewer-token"
	portalToken = "test-portal-token"
)

// api is the admin API over a fresh database, called in process.
type api struct {
	t   *testing.T
	h   *Handler
	svc *Service
}

func newAPI(t *testing.T) *api {
	t.Helper()
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	tokens, err := NewTokens(testToken, []TokenConfig{
		{Name: "ci-viewer", SHA256: sum(viewerToken), Role: "viewer"},
		{Name: "platform", SHA256: sum(portalToken), Role: "portal"},
	})
	if err != nil {
		t.Fatal(err)
	}
	svc := newService(t, nil)
	h, err := NewHandler(svc, tokens, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &api{t: t, h: h, svc: svc}
}

// do sends one request with the admin token and returns the status, the
// headers and the body decoded as a JSON object (failing the test when it
// is not one).
func (a *api) do(method, path, body string) (int, http.Header, map[string]any) {
	a.t.Helper()
	return a.doAs(testToken, method, path, body)
}

// doAs is do with another bearer token.
func (a *api) doAs(token, method, path, body string) (int, http.Header, map[string]any) {
	a.t.Helper()
	return a.doReq(method, path, body, token, "")
}

// events lists the whole audit log, as the system.
func (a *api) events() []store.AuditEvent {
	a.t.Helper()
	evs, _, err := a.svc.Audit(context.Background(), AuditRequest{Limit: MaxPageSize})
	if err != nil {
		a.t.Fatal(err)
	}
	return evs
}

// doReq is do with a bearer token and, if not empty, an X-Request-Id.
func (a *api) doReq(method, path, body, token, requestID string) (int, http.Header, map[string]any) {
	a.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		a.t.Fatalf("%s %s: Content-Type %q, want application/json; body %q", method, path, ct, rec.Body.String())
	}
	var out map[string]any
	if method != http.MethodHead {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			a.t.Fatalf("%s %s: body is not a JSON object: %v: %q", method, path, err, rec.Body.String())
		}
	}
	return rec.Code, rec.Header(), out
}

func errorOf(body map[string]any) (code, msg string) {
	e, _ := body["error"].(map[string]any)
	code, _ = e["code"].(string)
	msg, _ = e["message"].(string)
	return code, msg
}

func TestAPIErrorsAreJSON(t *testing.T) {
	a := newAPI(t)
	cases := []struct {
		name, method, path, body string
		status                   int
		code, msg                string
		allow                    string
	}{
		{"unknown path", "GET", "/admin/v1/nope", "", 404, "not_found", "no such path in the admin API: /admin/v1/nope", ""},
		{"unknown nested path", "GET", "/admin/v1/keys/k/nope", "", 404, "not_found", "/admin/v1/keys/k/nope", ""},
		{"trailing slash", "GET", "/admin/v1/keys/", "", 404, "not_found", "", ""},
		{"put on keys", "PUT", "/admin/v1/keys", "", 405, "method_not_allowed", "PUT is not allowed on /admin/v1/keys (allowed: GET, HEAD, POST)", "GET, HEAD, POST"},
		{"post on a key", "POST", "/admin/v1/keys/key_x", "", 405, "method_not_allowed", "", "GET, HEAD, PATCH, DELETE"},
		{"get on revoke", "GET", "/admin/v1/keys/key_x/revoke", "", 405, "method_not_allowed", "", "POST"},
		{"get on a grant", "GET", "/admin/v1/grants/acme/org", "", 405, "method_not_allowed", "", "PUT, DELETE"},
		{"delete on grants", "DELETE", "/admin/v1/grants", "", 405, "method_not_allowed", "", "GET, HEAD, POST"},
		{"put on import", "PUT", "/admin/v1/keys/import", "", 405, "method_not_allowed", "", "GET, HEAD, POST, PATCH, DELETE"}, // GET, PATCH and DELETE: keys/{id}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, hdr, body := a.do(tc.method, tc.path, tc.body)
			code, msg := errorOf(body)
			if status != tc.status || code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Fatalf("%d %s %q, want %d %s %q", status, code, msg, tc.status, tc.code, tc.msg)
			}
			if got := hdr.Get("Allow"); got != tc.allow {
				t.Errorf("Allow: %q, want %q", got, tc.allow)
			}
		})
	}
}

func TestAPIBodyErrors(t *testing.T) {
	a := newAPI(t)
	big := `{"tenant":"` + strings.Repeat("a", maxBody) + `"}`
	cases := []struct {
		name, path, body string
		status           int
		msg              string
	}{
		{"scopes not a list", "/admin/v1/keys", `{"tenant":"acme","scopes":"patients:read"}`, 400, "scopes: must be a list of strings"},
		{"scope not a string", "/admin/v1/keys", `{"tenant":"acme","scopes":[1]}`, 400, "scopes: must be a list of strings"},
		{"tenant not a string", "/admin/v1/keys", `{"tenant":7}`, 400, "tenant: must be a string"},
		{"env not a string", "/admin/v1/keys", `{"tenant":"acme","env":true}`, 400, "env: must be a string"},
		{"expires_in a number", "/admin/v1/keys", `{"tenant":"acme","expires_in":3600}`, 400, `expires_in: must be a duration string such as "30d"`},
		{"expires_in bad", "/admin/v1/keys", `{"tenant":"acme","expires_in":"soon"}`, 400, `expires_in: "soon" is not a duration`},
		{"expires_in without unit", "/admin/v1/keys", `{"tenant":"acme","expires_in":"30"}`, 400, `expires_in: "30" has no unit`},
		{"expires_in negative", "/admin/v1/keys", `{"tenant":"acme","expires_in":"-1d"}`, 400, "expires_in: must not be negative"},
		{"grace bad", "/admin/v1/keys/key_x/roll", `{"grace":"1 week"}`, 400, `grace: "1 week" is not a duration`},
		{"unknown field", "/admin/v1/keys", `{"tenant":"acme","bogus":1}`, 400, "bogus: unknown field (known: tenant, name, env, prefix, scopes, plan, expires_in, allowed_cidrs, metadata)"},
		{"not json", "/admin/v1/keys", `not json`, 400, "body: not valid JSON at byte 2"},
		{"a list, not an object", "/admin/v1/keys", `[1]`, 400, "body: must be a JSON object"},
		{"empty body", "/admin/v1/keys", ``, 400, "body: empty; send a JSON object"},
		{"cut short", "/admin/v1/keys", `{"tenant":`, 400, "body: the JSON ends too soon"},
		{"two values", "/admin/v1/keys", `{"tenant":"acme"} {}`, 400, "body: more than one JSON value"},
		{"too large", "/admin/v1/keys", big, 413, "body: larger than 1048576 bytes"},
		{"no tenant", "/admin/v1/keys", `{}`, 400, "tenant: required"},
		{"import sha256 a number", "/admin/v1/keys/import", `{"sha256":5}`, 400, "sha256: must be a string"},
		{"grant scopes an object", "/admin/v1/grants", `{"tenant":"acme","org":"o","scopes":{}}`, 400, "scopes: must be a list of strings"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := a.do("POST", tc.path, tc.body)
			code, msg := errorOf(body)
			if status != tc.status || code != "invalid_request" || !strings.HasPrefix(msg, tc.msg) {
				t.Fatalf("%d %s %q, want %d invalid_request %q", status, code, msg, tc.status, tc.msg)
			}
			for _, internal := range []string{"Go struct", "json:", "createBody", "[]string", "time.Duration"} {
				if strings.Contains(msg, internal) {
					t.Errorf("message shows Go internals (%q): %s", internal, msg)
				}
			}
		})
	}
}

func TestAPIExpiresInDays(t *testing.T) {
	a := newAPI(t)
	cases := []struct {
		name, body string
		want       time.Duration // 0: never expires
	}{
		{"days", `{"tenant":"acme","expires_in":"30d"}`, 30 * 24 * time.Hour},
		{"days and hours", `{"tenant":"acme","expires_in":"1d12h"}`, 36 * time.Hour},
		{"hours", `{"tenant":"acme","expires_in":"720h"}`, 720 * time.Hour},
		{"absent", `{"tenant":"acme"}`, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := a.do("POST", "/admin/v1/keys", tc.body)
			if status != 201 {
				t.Fatalf("create: %d %v", status, body)
			}
			created, _ := time.Parse(time.RFC3339Nano, body["created_at"].(string))
			if tc.want == 0 {
				if body["expires_at"] != nil {
					t.Fatalf("expires_at %v, want none", body["expires_at"])
				}
				return
			}
			exp, err := time.Parse(time.RFC3339Nano, fmt.Sprint(body["expires_at"]))
			if err != nil || exp.Sub(created) != tc.want {
				t.Fatalf("expires_at %v - created_at %v = %v, want %v", body["expires_at"], created, exp.Sub(created), tc.want)
			}
		})
	}
}

func TestAPIListNext(t *testing.T) {
	a := newAPI(t)
	for range 5 {
		if status, _, body := a.do("POST", "/admin/v1/keys", `{"tenant":"acme"}`); status != 201 {
			t.Fatalf("create: %d %v", status, body)
		}
	}
	page := func(query string) (ids []string, next any) {
		t.Helper()
		status, _, body := a.do("GET", "/admin/v1/keys"+query, "")
		if status != 200 {
			t.Fatalf("list %s: %d %v", query, status, body)
		}
		for _, k := range body["keys"].([]any) {
			ids = append(ids, k.(map[string]any)["id"].(string))
		}
		return ids, body["next"]
	}
	all, next := page("")
	if len(all) != 5 || next != nil {
		t.Fatalf("default page: %d keys, next %v; want 5 and no next", len(all), next)
	}
	var walked []string
	for q := "?limit=2"; ; {
		ids, next := page(q)
		walked = append(walked, ids...)
		if next == nil {
			break
		}
		if next != ids[len(ids)-1] {
			t.Fatalf("next %v is not the page's last id %s", next, ids[len(ids)-1])
		}
		q = "?limit=2&after=" + next.(string)
	}
	if strings.Join(walked, ",") != strings.Join(all, ",") {
		t.Fatalf("paging with next walked %v, want %v", walked, all)
	}
	for _, tc := range []struct{ name, query, msg string }{
		{"limit zero", "?limit=0", `limit: "0" is not a whole number from 1 to 1000`},
		{"limit too big", "?limit=1001", `limit: "1001" is not a whole number from 1 to 1000`},
		{"limit not a number", "?limit=ten", `limit: "ten"`},
		{"all not a boolean", "?all=maybe", `all: "maybe" is not true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := a.do("GET", "/admin/v1/keys"+tc.query, "")
			if code, msg := errorOf(body); status != 400 || code != "invalid_request" || !strings.HasPrefix(msg, tc.msg) {
				t.Fatalf("%d %s %q, want 400 %q", status, code, msg, tc.msg)
			}
		})
	}
}

// TestAPIRevokeTwice: a second revoke of a key is 409 already_revoked (the
// key is still there, in a state that forbids the operation); a second
// delete of a grant is 404 (a revoked grant is gone: not listed, and PUT
// starts a new one).
func TestAPIRevokeTwice(t *testing.T) {
	a := newAPI(t)
	_, _, created := a.do("POST", "/admin/v1/keys", `{"tenant":"acme"}`)
	id := created["id"].(string)
	if status, _, _ := a.do("PUT", "/admin/v1/grants/acme/clinic-1", `{"scopes":["patients:read"]}`); status != 200 {
		t.Fatalf("grant set: %d", status)
	}
	cases := []struct {
		name, method, path string
		status             int
		code, msg          string
	}{
		{"revoke", "POST", "/admin/v1/keys/" + id + "/revoke", 200, "", ""},
		{"revoke again", "POST", "/admin/v1/keys/" + id + "/revoke", 409, "already_revoked", "key " + id + " was revoked at "},
		{"delete again", "DELETE", "/admin/v1/keys/" + id, 409, "already_revoked", "key " + id + " was revoked at "},
		{"revoke unknown", "POST", "/admin/v1/keys/key_nope/revoke", 404, "not_found", ""},
		{"delete grant", "DELETE", "/admin/v1/grants/acme/clinic-1", 200, "", ""},
		{"delete grant again", "DELETE", "/admin/v1/grants/acme/clinic-1", 404, "not_found", "no grant in force for tenant acme in organization clinic-1"},
		{"delete unknown grant", "DELETE", "/admin/v1/grants/acme/nowhere", 404, "not_found", "no grant in force for tenant acme in organization nowhere"},
	}
	for _, tc := range cases { // in order: each case builds on the last
		status, _, body := a.do(tc.method, tc.path, "")
		code, msg := errorOf(body)
		if status != tc.status || code != tc.code || !strings.HasPrefix(msg, tc.msg) {
			t.Fatalf("%s: %d %s %q, want %d %s %q", tc.name, status, code, msg, tc.status, tc.code, tc.msg)
		}
	}
}

func TestAPIRollWithoutBody(t *testing.T) {
	a := newAPI(t)
	_, _, created := a.do("POST", "/admin/v1/keys", `{"tenant":"acme"}`)
	status, _, body := a.do("POST", "/admin/v1/keys/"+created["id"].(string)+"/roll", "")
	if status != 201 || body["key"] == nil {
		t.Fatalf("roll without a body: %d %v", status, body)
	}
}
