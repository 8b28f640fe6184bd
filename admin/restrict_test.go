package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/store"
)

// TestAPIAllowedCIDRsAndMetadata: create takes allowed_cidrs and metadata,
// every view shows them, PATCH changes them with a key.updated audit event,
// and bad values are refused with the field named.
func TestAPIAllowedCIDRsAndMetadata(t *testing.T) {
	a := newAPI(t)
	status, _, k := a.do("POST", "/admin/v1/keys",
		`{"tenant":"acme","allowed_cidrs":["10.1.2.3/8","2001:db8::/32"],"metadata":{"team":"billing","owner":"jane"}}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, k)
	}
	if got := fmt.Sprint(k["allowed_cidrs"], k["metadata"]); got != "[10.0.0.0/8 2001:db8::/32] map[owner:jane team:billing]" {
		t.Fatalf("created view: %s", got)
	}
	id := k["id"].(string)
	_, _, shown := a.do("GET", "/admin/v1/keys/"+id, "")
	if fmt.Sprint(shown["allowed_cidrs"], shown["metadata"]) != fmt.Sprint(k["allowed_cidrs"], k["metadata"]) {
		t.Fatalf("show: %v %v", shown["allowed_cidrs"], shown["metadata"])
	}
	_, _, plain := a.do("POST", "/admin/v1/keys", `{"tenant":"acme"}`)
	if fmt.Sprint(plain["allowed_cidrs"], plain["metadata"]) != "[] map[]" {
		t.Fatalf("a key without either shows %v %v, want [] and {}", plain["allowed_cidrs"], plain["metadata"])
	}

	status, _, upd := a.do("PATCH", "/admin/v1/keys/"+id, `{"allowed_cidrs":["192.0.2.0/24"]}`)
	if status != http.StatusOK || fmt.Sprint(upd["allowed_cidrs"], upd["metadata"]) != "[192.0.2.0/24] map[owner:jane team:billing]" {
		t.Fatalf("PATCH networks: %d %v", status, upd)
	}
	status, _, upd = a.do("PATCH", "/admin/v1/keys/"+id, `{"allowed_cidrs":[],"metadata":{}}`)
	if status != http.StatusOK || fmt.Sprint(upd["allowed_cidrs"], upd["metadata"]) != "[] map[]" {
		t.Fatalf("PATCH clearing both: %d %v", status, upd)
	}
	var updates []store.AuditEvent
	for _, e := range a.events() {
		if e.Action == store.ActionKeyUpdated && e.KeyID == id {
			updates = append(updates, e)
		}
	}
	if len(updates) != 2 || fmt.Sprint(updates[1].Details["allowed_cidrs"]) != "[192.0.2.0/24]" {
		t.Fatalf("key.updated events: %+v", updates)
	}

	bad := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"bare address", "POST", "/admin/v1/keys", `{"tenant":"acme","allowed_cidrs":["10.0.0.1"]}`, 400, `allowed_cidrs: "10.0.0.1" is not a network in CIDR notation`},
		{"cidrs a string", "POST", "/admin/v1/keys", `{"tenant":"acme","allowed_cidrs":"10.0.0.0/8"}`, 400, "allowed_cidrs: must be a list of strings"},
		{"metadata key", "POST", "/admin/v1/keys", `{"tenant":"acme","metadata":{"Team":"x"}}`, 400, `metadata: key "Team" must be 1–64 characters`},
		{"metadata value", "POST", "/admin/v1/keys", `{"tenant":"acme","metadata":{"team":"a\r\nb"}}`, 400, "metadata: team: the value must be printable ASCII"},
		{"metadata number", "POST", "/admin/v1/keys", `{"tenant":"acme","metadata":{"team":5}}`, 400, "metadata: must be an object of strings"},
		{"patch nothing", "PATCH", "/admin/v1/keys/" + id, `{}`, 400, "body: give allowed_cidrs, metadata or both"},
		{"patch unknown field", "PATCH", "/admin/v1/keys/" + id, `{"scopes":[]}`, 400, "scopes: unknown field (known: allowed_cidrs, metadata)"},
		{"patch bad cidr", "PATCH", "/admin/v1/keys/" + id, `{"allowed_cidrs":["10.0.0.0/40"]}`, 400, "allowed_cidrs:"},
		{"patch unknown key", "PATCH", "/admin/v1/keys/key_nope", `{"metadata":{}}`, 404, "key_nope"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := a.do(tc.method, tc.path, tc.body)
			if _, msg := errorOf(body); status != tc.status || !strings.Contains(msg, tc.msg) {
				t.Fatalf("%d %q, want %d %q", status, msg, tc.status, tc.msg)
			}
		})
	}
	if status, _, _ := a.doAs(viewerToken, "PATCH", "/admin/v1/keys/"+id, `{"metadata":{}}`); status != http.StatusForbidden {
		t.Fatalf("a viewer's PATCH: %d, want 403", status)
	}
	a.do("POST", "/admin/v1/keys/"+id+"/revoke", "")
	if status, _, body := a.do("PATCH", "/admin/v1/keys/"+id, `{"metadata":{"team":"x"}}`); status != 400 {
		t.Fatalf("PATCH of a revoked key: %d %v", status, body)
	}
}
