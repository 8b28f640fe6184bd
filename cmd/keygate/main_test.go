package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
)

// cli runs one keygate command in dir with the given environment.
type cli struct {
	t   *testing.T
	env map[string]string
}

// newCLI returns a CLI over a new SQLite database, created by `keygate
// migrate` as an operator would before managing keys.
func newCLI(t *testing.T) *cli {
	dir := t.TempDir()
	c := &cli{t: t, env: map[string]string{"KEYGATE_DATABASE_URL": "sqlite:" + filepath.Join(dir, "keygate.db"), "KEYGATE_LOG_LEVEL": "warn"}}
	c.ok("migrate")
	return c
}

func (c *cli) run(args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, env{stdout: &out, stderr: &errb, lookup: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }})
	code = report(&errb, err) // as main prints it
	return out.String(), errb.String(), code
}

func (c *cli) ok(args ...string) string {
	c.t.Helper()
	out, errs, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("keygate %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

func TestKeysLifecycleCLI(t *testing.T) {
	c := newCLI(t)
	var created map[string]any
	out := c.ok("keys", "create", "--tenant", "acme", "--env", "live", "--scopes", "patients:read,forms:write", "--name", "svc", "--json")
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("keys create --json: %v: %s", err, out)
	}
	for _, f := range []string{"id", "key", "prefix", "tenant", "env", "scopes", "plan", "expires_at"} {
		if _, ok := created[f]; !ok {
			t.Errorf("keys create --json lacks %q: %s", f, out)
		}
	}
	key, id := created["key"].(string), created["id"].(string)
	if !strings.HasPrefix(key, "sk_live_") || created["plan"] != "live" || created["expires_at"] != nil {
		t.Errorf("unexpected create output: %s", out)
	}
	list := c.ok("keys", "list")
	listJSON := c.ok("keys", "list", "--json")
	show := c.ok("keys", "show", id, "--json")
	for name, s := range map[string]string{"list": list, "list --json": listJSON, "show": show} {
		if strings.Contains(s, key) || strings.Contains(s, key[15:]) {
			t.Errorf("keys %s shows the secret", name)
		}
		if !strings.Contains(s, id) || !strings.Contains(s, key[:15]) {
			t.Errorf("keys %s lacks id or display prefix: %s", name, s)
		}
	}
	out = c.ok("keys", "revoke", id, "--json")
	if !strings.Contains(out, `"status": "revoked"`) {
		t.Errorf("revoke output: %s", out)
	}
	if strings.Contains(c.ok("keys", "list"), id) {
		t.Error("revoked key listed without --all")
	}
	if !strings.Contains(c.ok("keys", "list", "--all"), id) {
		t.Error("revoked key missing from --all")
	}
	// The database file never holds the key.
	db, err := os.ReadFile(strings.TrimPrefix(c.env["KEYGATE_DATABASE_URL"], "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(db, []byte(key)) || bytes.Contains(db, []byte(key[15:])) {
		t.Fatal("the key is in the database file")
	}
}

func TestCLIErrors(t *testing.T) {
	c := newCLI(t)
	cfgUnknown := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(cfgUnknown, []byte("grpc_addr: ':1'\ndatabse: {}\n"), 0o600)
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"revoke unknown id", []string{"keys", "revoke", "key_nope"}, nil, 1, "not found"},
		{"show unknown id", []string{"keys", "show", "key_nope"}, nil, 1, "not found"},
		{"revoke without id", []string{"keys", "revoke"}, nil, 2, "key id"},
		{"create without tenant", []string{"keys", "create"}, nil, 2, "tenant"},
		{"create bad scope", []string{"keys", "create", "--tenant", "a", "--scopes", "Patients"}, nil, 2, "scopes[0]"},
		{"create unknown plan", []string{"keys", "create", "--tenant", "a", "--plan", "gold"}, nil, 2, "plan"},
		{"create bad env", []string{"keys", "create", "--tenant", "a", "--env", "prod"}, nil, 2, "env"},
		{"unknown command", []string{"frobnicate"}, nil, 2, "unknown command"},
		{"unknown subcommand", []string{"keys", "frob"}, nil, 2, "unknown subcommand"},
		{"unknown flag", []string{"keys", "list", "--nope"}, nil, 2, "nope"},
		{"config unknown field", []string{"keys", "list", "--config", cfgUnknown}, nil, 1, "databse"},
		{"missing db directory", []string{"keys", "list"}, map[string]string{"KEYGATE_DATABASE_URL": "sqlite:/nonexistent/dir/k.db"}, 1, "/nonexistent/dir"},
		{"serve missing db directory", []string{"serve"}, map[string]string{"KEYGATE_DATABASE_URL": "sqlite:/nonexistent/dir/k.db"}, 1, "/nonexistent/dir"},
		{"serve bad env value", []string{"serve"}, map[string]string{"KEYGATE_DATABASE_POLL_INTERVAL": "often"}, 1, "KEYGATE_DATABASE_POLL_INTERVAL"},
		{"grant without org", []string{"grants", "set", "--tenant", "a"}, nil, 2, "org"},
		{"revoke unknown grant", []string{"grants", "revoke", "--tenant", "a", "--org", "b"}, nil, 1, "not found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := &cli{t: t, env: map[string]string{}}
			for k, v := range c.env {
				cc.env[k] = v
			}
			for k, v := range tc.env {
				cc.env[k] = v
			}
			_, errs, code := cc.run(tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errs, tc.want)
			}
		})
	}
}

// TestCLIRefusalsReadOnce: a refusal from the key database reaches the
// terminal as one sentence, each word once (main adds only "keygate: ").
func TestCLIRefusalsReadOnce(t *testing.T) {
	c := newCLI(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"show", []string{"keys", "show", "key_x"}, "key key_x not found"},
		{"revoke", []string{"keys", "revoke", "key_x"}, "key key_x not found"},
		{"roll", []string{"keys", "roll", "key_x"}, "key key_x not found"},
		{"revoke grant", []string{"grants", "revoke", "--tenant", "a", "--org", "b"}, "grant of tenant a in org b not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errs, code := c.run(tc.args...)
			if code != 1 || errs != "keygate: "+tc.want+"\n" || out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and stderr %q", code, out, errs, tc.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	c := newCLI(t)
	if out := c.ok("version"); !strings.HasPrefix(out, "keygate ") {
		t.Errorf("version: %q", out)
	}
	var b server.BuildInfo
	if err := json.Unmarshal([]byte(c.ok("version", "--json")), &b); err != nil || b.Go == "" || b.Encoder == "" {
		t.Errorf("version --json: %v %+v", err, b)
	}
}

// startServe runs serve on free ports and returns the addresses.
func startServe(t *testing.T, cfg config.Config) (grpcAddr, httpAddr string, stop func() error) {
	t.Helper()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.Portal.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan [2]net.Addr, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	srv, err := server.New(cfg, log)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	go func() { done <- srv.Run(ctx) }()
	go func() {
		select {
		case <-srv.Ready():
			g, h := srv.Addrs()
			addrs <- [2]net.Addr{g, h}
		case <-ctx.Done():
		}
	}()
	select {
	case a := <-addrs:
		stop = func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(20 * time.Second):
				return errors.New("serve did not stop within 20s")
			}
		}
		t.Cleanup(func() { stop() })
		return a[0].String(), a[1].String(), stop
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("serve did not start")
	}
	return "", "", nil
}

// TestServeAndCheckCommand drives the walkthrough: create a key with the
// CLI, start the server, ask it with `keygate check`, revoke, ask again.
func TestServeAndCheckCommand(t *testing.T) {
	c := newCLI(t)
	var created struct{ ID, Key string }
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--env", "live", "--scopes", "patients:read", "--json")), &created)
	cfg, err := config.Load("", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database.PollInterval = 50 * time.Millisecond
	grpcAddr, _, stop := startServe(t, cfg)
	waitReady(t, grpcAddr)

	out, errs, code := c.run("check", "--addr", grpcAddr, "--key", created.Key, "--path", "/api/v1/patients", "--ext", "keygate.scopes=patients:read")
	if code != 0 || !strings.HasPrefix(out, "ALLOW") || !strings.Contains(out, "x-keygate-tenant: acme") {
		t.Fatalf("check allowed key: exit %d\n%s%s", code, out, errs)
	}
	out, _, code = c.run("check", "--addr", grpcAddr, "--key", created.Key, "--path", "/x", "--ext", "keygate.scopes=billing:read", "--raw-headers")
	if code != 1 || !strings.Contains(out, "DENY 403 (insufficient_scope)") {
		t.Fatalf("check missing scope: exit %d\n%s", code, out)
	}
	c.ok("keys", "revoke", created.ID)
	deadline := time.Now().Add(3 * time.Second)
	for {
		out, _, _ = c.run("check", "--addr", grpcAddr, "--key", created.Key, "--path", "/a", "--ext", "keygate.scopes=patients:read")
		if strings.Contains(out, "api_key_revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked key still allowed after 3s:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, errs, code := c.run("check", "--addr", "127.0.0.1:1", "--key", created.Key, "--timeout", "500ms"); code != 2 || errs == "" {
		t.Errorf("check against nothing: exit %d, %q", code, errs)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v on shutdown", err)
	}
}

func waitReady(t *testing.T, grpcAddr string) {
	t.Helper()
	// Serving is not ready: a Check answered before the cache has loaded
	// goes to the database. Ready is what gRPC health says, as Envoy's
	// health checks see it.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server at %s not ready: %v %v", grpcAddr, resp.GetStatus(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func loadCLIConfig(t *testing.T, c *cli) config.Config {
	t.Helper()
	cfg, err := config.Load(c.env["KEYGATE_CONFIG"], func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
