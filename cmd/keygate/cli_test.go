package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/genproto/googleapis/rpc/status"
)

// commandPaths lists every command of the tree as its words after
// "keygate" (the root as none).
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	var paths [][]string
	walk(newRoot(env{lookup: func(string) (string, bool) { return "", false }}), func(c *cobra.Command) {
		words := strings.Fields(c.CommandPath())[1:]
		paths = append(paths, words)
	})
	if len(paths) < 15 {
		t.Fatalf("only %d commands in the tree", len(paths))
	}
	return paths
}

// TestHelpEverywhere asks every command for help three ways: --help, -h
// and 'keygate help …'; each exits 0 with the same text on stdout and
// nothing on stderr, and the text has every section a command should.
func TestHelpEverywhere(t *testing.T) {
	c := &cli{t: t, env: map[string]string{}}
	root := newRoot(env{lookup: func(string) (string, bool) { return "", false }})
	for _, path := range commandPaths(t) {
		name := strings.Join(append([]string{"keygate"}, path...), " ")
		t.Run(name, func(t *testing.T) {
			c.t = t
			cmd, _, err := root.Find(path)
			if err != nil {
				t.Fatal(err)
			}
			var texts []string
			for _, args := range [][]string{append(path, "--help"), append(path, "-h"), append([]string{"help"}, path...)} {
				out, errs, code := c.run(args...)
				if code != 0 || errs != "" || out == "" {
					t.Fatalf("keygate %s: exit %d, stderr %q, stdout %d bytes", strings.Join(args, " "), code, errs, len(out))
				}
				texts = append(texts, out)
			}
			if texts[0] != texts[1] || texts[0] != texts[2] {
				t.Fatalf("--help, -h and help differ:\n%s\n---\n%s\n---\n%s", texts[0], texts[1], texts[2])
			}
			help := texts[0]
			want := []string{"Usage:\n  " + name, "Flags:\n", "-h, --help"}
			leaf := !cmd.HasAvailableSubCommands()
			if leaf {
				want = append(want, "Exit status:\n  0  ")
				if !strings.HasPrefix(cmd.CommandPath(), "keygate completion ") { // cobra's own
					want = append(want, "Examples:\n  keygate "+strings.Join(path, " "))
				}
			} else {
				want = append(want, "Commands:\n")
			}
			for _, w := range want {
				if !strings.Contains(help, w) {
					t.Errorf("help lacks %q:\n%s", w, help)
				}
			}
			cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
				line := regexp.MustCompile(`(?m)^ +(-[a-z], )?--` + regexp.QuoteMeta(f.Name) + `( \S.*?)? {2,}(\S.*)$`).FindStringSubmatch(help)
				if line == nil {
					t.Errorf("flag --%s is not listed with a description:\n%s", f.Name, help)
					return
				}
				if _, req := f.Annotations[annRequired]; req != strings.Contains(line[3], "(required)") {
					t.Errorf("flag --%s: required %v, but its help says %q", f.Name, req, line[3])
				}
			})
			if strings.Contains(help, " -"+"json") || regexp.MustCompile(`(?m)^\s+-[a-z]{2,}`).MatchString(help) {
				t.Errorf("help shows a single-dash long flag:\n%s", help)
			}
		})
	}
}

func TestHelpContent(t *testing.T) {
	c := &cli{t: t, env: map[string]string{}}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"root lists every command", []string{"--help"}, []string{"  serve ", "  keys ", "  grants ", "  migrate ", "  check ", "  version ", "  help ", "keygate help [command]"}},
		{"keys lists its subcommands", []string{"help", "keys"}, []string{"  create ", "  list ", "  show ", "  revoke ", "  roll ", "  import "}},
		{"revoke names its argument", []string{"keys", "revoke", "--help"}, []string{"Usage:\n  keygate keys revoke ID [flags]", "Arguments:\n  ID  the key's id"}},
		{"roll names its argument", []string{"keys", "roll", "--help"}, []string{"keygate keys roll ID [flags]", "Arguments:\n  ID", "--grace duration"}},
		{"create shows the required flag", []string{"keys", "create", "--help"}, []string{"keygate keys create --tenant TENANT [flags]", "--tenant string", "(required)", "--expires-in duration", "90d"}},
		{"grants set explains --scopes ''", []string{"grants", "set", "--help"}, []string{"--scopes ''", "--scopes list"}},
		{"check documents its output and exit codes", []string{"check", "--help"}, []string{"ALLOW\n  Headers for the upstream:", "Removed from the request:", "DENY <status> (<code>)", "Body:", "0  ALLOW", "1  DENY", "2  could not ask"}},
		{"serve documents signals and exit codes", []string{"serve", "--help"}, []string{"SIGTERM", "--config file", "0  stopped by SIGTERM"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			out := c.ok(tc.args...)
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestUsageErrors: every mistake on the command line is exit status 2 and
// at most two lines (the error and, where it helps, where the usage is),
// never the whole usage.
func TestUsageErrors(t *testing.T) {
	c := newCLI(t)
	cases := []struct {
		name   string
		args   []string
		stderr string // exactly
	}{
		{"no command", []string{"nope"}, "keygate: unknown command \"nope\"\nRun 'keygate --help' for usage.\n"},
		{"command typo", []string{"kyes"}, "keygate: unknown command \"kyes\" (did you mean \"keys\"?)\nRun 'keygate --help' for usage.\n"},
		{"no subcommand", []string{"grants"}, "keygate: grants: need a subcommand: set, list or revoke\nRun 'keygate grants --help' for usage.\n"},
		{"subcommand typo", []string{"keys", "lst"}, "keygate: unknown subcommand \"lst\" (did you mean \"list\"?)\nRun 'keygate keys --help' for usage.\n"},
		{"no tenant", []string{"keys", "create"}, "keygate: --tenant is required: the tenant (organization) the key belongs to\nRun 'keygate keys create --help' for usage.\n"},
		{"no scopes", []string{"grants", "set", "--tenant", "acme", "--org", "clinic-7"}, "keygate: --scopes is required: comma-separated list of scopes granted there; '' for none\nRun 'keygate grants set --help' for usage.\n"},
		{"several required", []string{"keys", "import"}, "keygate: --sha256, --prefix and --tenant are required\nRun 'keygate keys import --help' for usage.\n"},
		{"bad duration", []string{"keys", "create", "--tenant", "a", "--expires-in", "30x"}, "keygate: --expires-in: \"30x\" is not a duration: use the units d, h, m, s or ms, e.g. 30d, 1h30m or 500ms\n"},
		{"duration without unit", []string{"keys", "roll", "key_x", "--grace", "24"}, "keygate: --grace: \"24\" has no unit: write e.g. 24s, 24m, 24h or 24d\n"},
		{"check timeout", []string{"check", "--timeout", "soon"}, "keygate: --timeout: \"soon\" is not a duration: use the units d, h, m, s or ms, e.g. 30d, 1h30m or 500ms\n"},
		{"bad int", []string{"keys", "list", "--limit", "ten"}, "keygate: --limit: \"ten\" is not a whole number\n"},
		{"bad bool", []string{"keys", "list", "--all=maybe"}, "keygate: --all: \"maybe\" is not true or false\n"},
		{"single dash", []string{"keys", "list", "-json"}, "keygate: unknown flag -json: flags take two dashes: --json\nRun 'keygate keys list --help' for usage.\n"},
		{"unknown flag", []string{"keys", "list", "--nope"}, "keygate: unknown flag: --nope\nRun 'keygate keys list --help' for usage.\n"},
		{"flag without value", []string{"keys", "list", "--tenant"}, "keygate: flag needs an argument: --tenant\nRun 'keygate keys list --help' for usage.\n"},
		{"extra argument", []string{"keys", "list", "extra"}, "keygate: unexpected argument \"extra\"\nRun 'keygate keys list --help' for usage.\n"},
		{"no id", []string{"keys", "show"}, "keygate: need exactly one argument: the key id\nRun 'keygate keys show --help' for usage.\n"},
		{"two ids", []string{"keys", "revoke", "a", "b"}, "keygate: need exactly one argument: the key id\nRun 'keygate keys revoke --help' for usage.\n"},
		{"unknown help topic", []string{"help", "keys", "nope"}, "keygate: unknown help topic \"keys nope\"\nRun 'keygate help' for the commands.\n"},
		{"bad header", []string{"check", "--header", "novalue"}, "keygate: --header \"novalue\": want 'name: value'\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			out, errs, code := c.run(tc.args...)
			if code != 2 || errs != tc.stderr || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr\n%q\nwant exit 2, stderr\n%q", code, out, errs, tc.stderr)
			}
		})
	}
	// No command at all prints the help, to stderr, and exits 2.
	c.t = t
	out, errs, code := c.run()
	if code != 2 || out != "" || !strings.Contains(errs, "Usage:\n  keygate <command> [flags]") {
		t.Fatalf("keygate without a command: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

func TestKeysCreateDurationsAndDefaults(t *testing.T) {
	c := newCLI(t)
	var k struct {
		ID        string     `json:"id"`
		Key       string     `json:"key"`
		Env       string     `json:"env"`
		CreatedAt time.Time  `json:"created_at"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	cases := []struct {
		name string
		args []string
		want time.Duration
	}{
		{"days", []string{"--expires-in", "30d"}, 30 * 24 * time.Hour},
		{"days and hours", []string{"--expires-in=1d12h"}, 36 * time.Hour},
		{"hours", []string{"--expires-in", "720h"}, 720 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			out := c.ok(append([]string{"keys", "create", "--tenant", "acme", "--json"}, tc.args...)...)
			if err := json.Unmarshal([]byte(out), &k); err != nil || k.ExpiresAt == nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got := k.ExpiresAt.Sub(k.CreatedAt); got != tc.want {
				t.Fatalf("expires %v after creation, want %v", got, tc.want)
			}
		})
	}
	c.t = t
	var rolled struct {
		Old struct {
			RolledAt  time.Time `json:"rolled_at"`
			ExpiresAt time.Time `json:"expires_at"`
		} `json:"old"`
	}
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--json")), &k)
	if err := json.Unmarshal([]byte(c.ok("keys", "roll", k.ID, "--grace", "7d", "--json")), &rolled); err != nil {
		t.Fatal(err)
	}
	if got := rolled.Old.ExpiresAt.Sub(rolled.Old.RolledAt); got != 7*24*time.Hour {
		t.Fatalf("roll --grace 7d: the old key expires %v after the roll", got)
	}
}

// TestLiveOnlyProfile: with only cc_live_ keys configured (CashCat), a key
// created without --env is a live key, not an error about test keys.
func TestLiveOnlyProfile(t *testing.T) {
	c := newCLI(t)
	c.env["KEYGATE_CONFIG"] = filepath.Join("..", "..", "deploy", "profiles", "cashcat.yaml")
	var k struct{ Key, Env, Plan string }
	if err := json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "cat", "--json")), &k); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(k.Key, "cc_live_") || k.Env != "live" || k.Plan != "live" {
		t.Fatalf("created %s… env %s plan %s, want a cc_live_ key, env live, plan live", k.Key[:8], k.Env, k.Plan)
	}
	if _, errs, code := c.run("keys", "create", "--tenant", "cat", "--env", "test"); code != 2 || !strings.Contains(errs, "env: no key format is configured for test keys") {
		t.Fatalf("--env test on a live-only profile: exit %d, %q", code, errs)
	}
}

func TestGrantsSetScopes(t *testing.T) {
	c := newCLI(t)
	cases := []struct {
		name   string
		scopes []string
		want   []string
	}{
		{"some scopes", []string{"--scopes", "patients:read, forms:write"}, []string{"patients:read", "forms:write"}},
		{"explicitly none", []string{"--scopes", ""}, []string{}},
		{"explicitly none, = form", []string{"--scopes="}, []string{}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			org := "clinic-" + string(rune('a'+i))
			var g struct{ Scopes []string }
			out := c.ok(append([]string{"grants", "set", "--tenant", "acme", "--org", org, "--json"}, tc.scopes...)...)
			if err := json.Unmarshal([]byte(out), &g); err != nil || g.Scopes == nil || strings.Join(g.Scopes, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("scopes %v (%v), want %v: %s", g.Scopes, err, tc.want, out)
			}
		})
	}
}

func TestKeysListPages(t *testing.T) {
	c := newCLI(t)
	for range 3 {
		c.ok("keys", "create", "--tenant", "acme")
	}
	var all []struct{ ID string }
	json.Unmarshal([]byte(c.ok("keys", "list", "--json")), &all)
	if len(all) != 3 {
		t.Fatalf("%d keys listed, want 3", len(all))
	}
	cases := []struct {
		name   string
		args   []string
		n      int
		stderr string
	}{
		{"first page", []string{"--limit", "2"}, 2, "More keys follow: add --after " + all[1].ID + " for the next page.\n"},
		{"last page", []string{"--limit", "2", "--after", all[1].ID}, 1, ""},
		{"exact fit: no note", []string{"--limit", "3"}, 3, ""},
		{"no limit", nil, 3, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			out, errs, code := c.run(append([]string{"keys", "list", "--json"}, tc.args...)...)
			var page []struct{ ID string }
			if err := json.Unmarshal([]byte(out), &page); code != 0 || err != nil || len(page) != tc.n || errs != tc.stderr {
				t.Fatalf("exit %d, %d keys (%v), stderr %q; want %d keys, stderr %q", code, len(page), err, errs, tc.n, tc.stderr)
			}
		})
	}
}

func TestRevokeTwiceCLI(t *testing.T) {
	c := newCLI(t)
	var k struct{ ID string }
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--json")), &k)
	c.ok("keys", "revoke", k.ID)
	_, errs, code := c.run("keys", "revoke", k.ID)
	if code != 1 || !strings.HasPrefix(errs, "keygate: already revoked: key "+k.ID+" was revoked at ") {
		t.Fatalf("second revoke: exit %d, %q", code, errs)
	}
}

func TestCompletion(t *testing.T) {
	c := &cli{t: t, env: map[string]string{}}
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		if out := c.ok("completion", shell); !strings.Contains(out, "keygate") {
			t.Errorf("completion %s: no script:\n%.200s", shell, out)
		}
	}
}

// TestCheckOutput pins the blocks check prints, in order, as its help
// documents them.
func TestCheckOutput(t *testing.T) {
	hdr := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	}
	cases := []struct {
		name string
		resp *authv3.CheckResponse
		want string
	}{
		{"allow", &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:              []*corev3.HeaderValueOption{hdr("x-keygate-tenant", "acme"), hdr("x-keygate-env", "live")},
			HeadersToRemove:      []string{"authorization", "x-keygate-spoof"},
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{hdr("x-ratelimit-limit", "10"), hdr("ratelimit-policy", `"1h";q=10;w=3600`), hdr("ratelimit", `"1h";r=9;t=1`)},
		}}}, `ALLOW
Headers for the upstream:
  x-keygate-env: live
  x-keygate-tenant: acme
Removed from the request: authorization, x-keygate-spoof
Headers for the client:
  ratelimit: "1h";r=9;t=1
  ratelimit-policy: "1h";q=10;w=3600
  x-ratelimit-limit: 10
`},
		{"allow, empty blocks", &authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, `ALLOW
Headers for the upstream:
  (none)
Removed from the request: (none)
Headers for the client:
  (none)
`},
		{"deny", &authv3.CheckResponse{Status: &status.Status{Code: 7, Message: "insufficient_scope"}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
			Headers: []*corev3.HeaderValueOption{hdr("content-type", "application/json")},
			Body:    `{"error":{"code":"insufficient_scope"}}`,
		}}}, `DENY 403 (insufficient_scope)
Headers for the client:
  content-type: application/json
Body:
  {"error":{"code":"insufficient_scope"}}
`},
		{"deny, empty blocks", &authv3.CheckResponse{Status: &status.Status{Code: 16, Message: "missing_api_key"}, HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
		}}}, `DENY 401 (missing_api_key)
Headers for the client:
  (none)
Body:
  (none)
`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printCheck(&b, tc.resp)
			if b.String() != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", b.String(), tc.want)
			}
		})
	}
}
