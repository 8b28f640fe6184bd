package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// TestKeysNetworksAndMetadataCLI: --allow-cidr and --meta on create, shown
// by list and show, changed and cleared by keys update (an audit event
// each); bad values exit 2 naming the flag, before any change.
func TestKeysNetworksAndMetadataCLI(t *testing.T) {
	c := newCLI(t)
	var k map[string]any
	out := c.ok("keys", "create", "--tenant", "acme", "--allow-cidr", "10.0.0.0/8,2001:db8::/32", "--allow-cidr", "192.0.2.7/32",
		"--meta", "team=billing", "--meta", "owner=jane", "--json")
	if err := json.Unmarshal([]byte(out), &k); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got := fmt.Sprint(k["allowed_cidrs"], k["metadata"]); got != "[10.0.0.0/8 2001:db8::/32 192.0.2.7/32] map[owner:jane team:billing]" {
		t.Fatalf("created: %s", got)
	}
	id := k["id"].(string)
	for _, args := range [][]string{{"keys", "list", "--tenant", "acme"}, {"keys", "show", id}} {
		out := c.ok(args...)
		if !strings.Contains(out, "NETWORKS") || !strings.Contains(out, "10.0.0.0/8,2001:db8::/32,192.0.2.7/32") ||
			!strings.Contains(out, "owner=jane,team=billing") {
			t.Errorf("keygate %s:\n%s", strings.Join(args, " "), out)
		}
	}
	out = c.ok("keys", "update", id, "--allow-cidr", "203.0.113.0/24", "--json")
	if err := json.Unmarshal([]byte(out), &k); err != nil || fmt.Sprint(k["allowed_cidrs"], k["metadata"]) != "[203.0.113.0/24] map[owner:jane team:billing]" {
		t.Fatalf("update --allow-cidr: %v %s", err, out)
	}
	out = c.ok("keys", "update", id, "--meta", "team=ops", "--clear-cidrs", "--json")
	if err := json.Unmarshal([]byte(out), &k); err != nil || fmt.Sprint(k["allowed_cidrs"], k["metadata"]) != "[] map[team:ops]" {
		t.Fatalf("update --meta --clear-cidrs: %v %s", err, out)
	}
	out = c.ok("keys", "update", id, "--clear-meta", "--json")
	if err := json.Unmarshal([]byte(out), &k); err != nil || fmt.Sprint(k["metadata"]) != "map[]" {
		t.Fatalf("update --clear-meta: %v %s", err, out)
	}
	if out := c.ok("audit", "list", "--action", "key.updated"); strings.Count(out, "key.updated") != 3 {
		t.Errorf("audit list --action key.updated:\n%s", out)
	}

	bad := []struct {
		args []string
		want string
	}{
		{[]string{"keys", "create", "--tenant", "acme", "--allow-cidr", "10.0.0.1"}, `--allow-cidr: "10.0.0.1" is not a network in CIDR notation`},
		{[]string{"keys", "create", "--tenant", "acme", "--allow-cidr", "10.0.0.0/8,"}, "--allow-cidr: an empty network"},
		{[]string{"keys", "create", "--tenant", "acme", "--meta", "team"}, `--meta: "team" is not KEY=VALUE`},
		{[]string{"keys", "create", "--tenant", "acme", "--meta", "Team=x"}, `--meta: key "Team" must be 1–64 characters`},
		{[]string{"keys", "create", "--tenant", "acme", "--meta", "team=a", "--meta", "team=b"}, `--meta: key "team" is given twice`},
		{[]string{"keys", "update", id}, "give --allow-cidr, --meta, --clear-cidrs or --clear-meta"},
		{[]string{"keys", "update", id, "--meta", "a=b", "--clear-meta"}, "give --meta or --clear-meta, not both"},
		{[]string{"keys", "update", id, "--allow-cidr", "10.0.0.0/8", "--clear-cidrs"}, "give --allow-cidr or --clear-cidrs, not both"},
	}
	for _, tc := range bad {
		_, errs, code := c.run(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("keygate %s: exit %d %q, want 2 %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
	if _, errs, code := c.run("keys", "update", "key_nope", "--clear-meta"); code != 1 || !strings.Contains(errs, "key_nope") {
		t.Errorf("update of an unknown key: exit %d %q", code, errs)
	}
}
