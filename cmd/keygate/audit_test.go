package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os/user"
	"regexp"
	"strings"
	"testing"

	"github.com/keygate/keygate/config"
)

// TestAuditCLI: changes made with the CLI are audit events whose actor is
// the OS user, listed newest first in text and JSON.
func TestAuditCLI(t *testing.T) {
	c := newCLI(t)
	var k struct{ ID string }
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--json")), &k)
	c.ok("keys", "expire", k.ID, "--in", "30d")
	c.ok("keys", "revoke", k.ID)
	c.ok("grants", "set", "--tenant", "acme", "--org", "clinic-1", "--scopes", "patients:read")

	var evs []struct {
		Action, Tenant string
		KeyID          string `json:"key_id"`
		Actor          struct{ Type, Name string }
		Details        map[string]any
	}
	if err := json.Unmarshal([]byte(c.ok("audit", "list", "--json")), &evs); err != nil {
		t.Fatal(err)
	}
	u, _ := user.Current()
	want := []string{"grant.set", "key.revoked", "key.expiry_changed", "key.created"}
	if len(evs) != len(want) {
		t.Fatalf("%d events: %+v", len(evs), evs)
	}
	for i, w := range want {
		if evs[i].Action != w || evs[i].Actor.Type != "cli" || evs[i].Actor.Name != u.Username {
			t.Errorf("event %d: %+v, want %s by cli %s", i, evs[i], w, u.Username)
		}
	}
	text := c.ok("audit", "list", "--key", k.ID)
	if !strings.HasPrefix(text, "AT ") || strings.Count(text, "\n") != 4 || !strings.Contains(text, "cli:"+u.Username) {
		t.Errorf("audit list --key:\n%s", text)
	}
	out, errs, code := c.run("audit", "list", "--limit", "1")
	if code != 0 || strings.Count(out, "\n") != 2 || !strings.Contains(errs, "--after evt_") {
		t.Errorf("one event a page: exit %d\n%s\n%s", code, out, errs)
	}
	for _, args := range [][]string{
		{"audit", "list", "--since", "yesterday"},
		{"audit", "list", "--action", "key.exploded"},
		{"keys", "expire", k.ID},
		{"keys", "expire", k.ID, "--in", "1d", "--never"},
		{"keys", "expire", k.ID, "--at", "tomorrow"},
	} {
		if _, errs, code := c.run(args...); code != 2 {
			t.Errorf("keygate %s: exit %d (%s), want 2", strings.Join(args, " "), code, errs)
		}
	}
}

// TestAdminTokenNew: the printed config line, loaded by a server, makes
// the printed token a viewer of the admin API: reads pass, writes are 403.
func TestAdminTokenNew(t *testing.T) {
	c := newCLI(t)
	out := c.ok("admin-token", "new", "--name", "ci", "--role", "viewer")
	m := regexp.MustCompile(`(?m)^  (kgadm_\S+)$`).FindStringSubmatch(out)
	line := regexp.MustCompile(`(?m)^    - (\{name: ci, sha256: [0-9a-f]{64}, role: viewer\})$`).FindStringSubmatch(out)
	if m == nil || line == nil {
		t.Fatalf("admin-token new printed:\n%s", out)
	}
	c.env["KEYGATE_ADMIN_TOKENS"] = "[" + line[1] + "]"
	cfg, err := config.Load("", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	_, httpAddr, _ := startServe(t, cfg)
	call := func(method, path string) int {
		req, _ := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader(`{"tenant":"acme"}`))
		req.Header.Set("Authorization", "Bearer "+m[1])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := call("GET", "/admin/v1/keys"); got != http.StatusOK {
		t.Errorf("viewer lists keys: %d", got)
	}
	if got := call("POST", "/admin/v1/keys"); got != http.StatusForbidden {
		t.Errorf("viewer creates a key: %d, want 403", got)
	}
	for _, args := range [][]string{{"admin-token", "new", "--name", "ci"}, {"admin-token", "new", "--name", "c i", "--role", "admin"}, {"admin-token", "new", "--name", "ci", "--role", "root"}} {
		if _, errs, code := c.run(args...); code != 2 {
			t.Errorf("keygate %s: exit %d (%s), want 2", strings.Join(args, " "), code, errs)
		}
	}
}
