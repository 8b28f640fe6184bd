package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/keys"
)

// profile runs Keygate on one shipped deploy/profiles file, as its seed's
// API would be fronted.
type profile struct {
	t      *testing.T
	cli    *cli
	client authv3.AuthorizationClient
}

func startProfile(t *testing.T, name string) *profile {
	t.Helper()
	c := newCLI(t)
	c.env["KEYGATE_CONFIG"] = filepath.Join("..", "..", "deploy", "profiles", name+".yaml")
	c.env["KEYGATE_DATABASE_POLL_INTERVAL"] = "50ms"
	c.env["KEYGATE_DATABASE_LAST_USED_FLUSH"] = "100ms"
	cfg, err := config.Load(c.env["KEYGATE_CONFIG"], func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatalf("profile %s does not load: %v", name, err)
	}
	grpcAddr, _, _ := startServe(t, cfg)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	waitReady(t, grpcAddr)
	return &profile{t: t, cli: c, client: authv3.NewAuthorizationClient(conn)}
}

func (p *profile) create(args ...string) (id, key string) {
	p.t.Helper()
	var c struct{ ID, Key string }
	if err := json.Unmarshal([]byte(p.cli.ok(append([]string{"keys", "create", "--json"}, args...)...)), &c); err != nil {
		p.t.Fatal(err)
	}
	return c.ID, c.Key
}

// answer is what the client (or, when allowed, the upstream) would see.
type answer struct {
	status   int
	upstream map[string]string // headers injected for the upstream
	headers  map[string]string // headers for the client
	body     map[string]any
	raw      string
}

// call sends a request the way Envoy would for `curl -X method path -H …`.
func (p *profile) call(method, path string, headers ...string) answer {
	p.t.Helper()
	a, err := p.try(method, path, headers...)
	if err != nil {
		p.t.Fatal(err)
	}
	return a
}

// try is call for any goroutine: it returns the error instead of failing
// the test.
func (p *profile) try(method, path string, headers ...string) (answer, error) {
	h := [][2]string{{":method", method}, {":path", path}}
	for i := 0; i+1 < len(headers); i += 2 {
		h = append(h, [2]string{strings.ToLower(headers[i]), headers[i+1]})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := p.client.Check(ctx, buildCheckRequest(method, path, "api.example.com", "", h, nil, false))
	if err != nil {
		return answer{}, fmt.Errorf("check: %w", err)
	}
	toMap := func(opts []*corev3.HeaderValueOption) map[string]string {
		m := map[string]string{}
		for _, o := range opts {
			m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
		}
		return m
	}
	if ok := resp.GetOkResponse(); ok != nil {
		return answer{status: 200, upstream: toMap(ok.GetHeaders()), headers: toMap(ok.GetResponseHeadersToAdd())}, nil
	}
	d := resp.GetDeniedResponse()
	a := answer{status: int(d.GetStatus().GetCode()), headers: toMap(d.GetHeaders()), raw: d.GetBody()}
	if err := json.Unmarshal([]byte(d.GetBody()), &a.body); err != nil {
		return a, fmt.Errorf("body is not JSON: %q", d.GetBody())
	}
	return a, nil
}

func (a answer) want(t *testing.T, status int) answer {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d; body %s", a.status, status, a.raw)
	}
	return a
}

// keysOf returns the body's field names, sorted, for shape checks.
func keysOf(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return strings.Join(ks, ",")
}

func nested(a answer) map[string]any {
	e, _ := a.body["error"].(map[string]any)
	return e
}

func bearerH(k string) []string { return []string{"Authorization", "Bearer " + k} }

// TestProfileCara replays the API's documented key conventions (docs/profiles.md).
func TestProfileCara(t *testing.T) {
	p := startProfile(t, "cara")
	_, live := p.create("--tenant", "clinic-a", "--env", "live", "--scopes", "patients:read,patients:write,forms:read,forms:write,scheduling:read,scheduling:write,emails:read,emails:write")
	testID, test := p.create("--tenant", "clinic-a", "--env", "test", "--scopes", "patients:read")
	if !strings.HasPrefix(live, "sk_live_") || !strings.HasPrefix(test, "sk_test_") {
		t.Fatalf("prefixes: %s %s", live[:8], test[:8])
	}
	// curl -X GET https://platform.caramedical.com/api/v1/patients -H "Authorization: Bearer sk_live_…" -H "Content-Type: application/json"
	a := p.call("GET", "/api/v1/patients", append(bearerH(live), "Content-Type", "application/json")...).want(t, 200)
	if a.upstream["x-keygate-env"] != "live" || a.upstream["x-keygate-tenant"] != "clinic-a" {
		t.Errorf("upstream headers %v", a.upstream)
	}
	if a.headers["ratelimit-policy"] != `"1h";q=10000;w=3600` {
		t.Errorf("live plan: %q (live keys: 10,000/hour, unlimited per day)", a.headers["ratelimit-policy"])
	}
	// Test keys "hit staging": Keygate marks them; Envoy routes on the header (envoy/envoy.yaml).
	a = p.call("GET", "/api/v1/patients", bearerH(test)...).want(t, 200)
	if a.upstream["x-keygate-env"] != "test" || a.headers["ratelimit-policy"] != `"1h";q=100;w=3600, "24h";q=1000;w=86400` {
		t.Errorf("test key: env %q, policy %q", a.upstream["x-keygate-env"], a.headers["ratelimit-policy"])
	}
	// Scopes are per resource: a test key with patients:read cannot write.
	a = p.call("POST", "/api/v1/patients", bearerH(test)...).want(t, 403)
	if nested(a)["message"] != "Insufficient scope. Required: patients:write" {
		t.Errorf("403 body %s", a.raw)
	}
	p.call("GET", "/api/v1/forms", bearerH(live)...).want(t, 200)
	p.call("PATCH", "/api/v1/scheduling/appointments/1", bearerH(live)...).want(t, 200)
	p.call("GET", "/api/v1/emails/sequences", bearerH(test)...).want(t, 403)
	// Test keys: 100 requests per hour, then 429 with Retry-After.
	for i := 1; i < 100; i++ { // one was spent above
		p.call("GET", "/api/v1/patients", bearerH(test)...).want(t, 200)
	}
	a = p.call("GET", "/api/v1/patients", bearerH(test)...).want(t, 429)
	if ra, err := strconv.Atoi(a.headers["retry-after"]); err != nil || ra < 1 || ra > 36 {
		t.Errorf("Retry-After %q, want 1..36 s (one request per 36 s refills a 100/h window)", a.headers["retry-after"])
	}
	// Revoked keys immediately stop working.
	p.cli.ok("keys", "revoke", testID)
	waitUntil(t, 2*time.Second, func() bool {
		return p.call("GET", "/api/v1/patients", bearerH(test)...).status == 401
	})
	if a := p.call("GET", "/api/v1/patients", bearerH(test)...); nested(a)["code"] != "api_key_revoked" {
		t.Errorf("revoked: %s", a.raw)
	}
}

// TestProfileAgentClara replays the API's documented key conventions (docs/profiles.md).
func TestProfileAgentClara(t *testing.T) {
	p := startProfile(t, "agentclara")
	oldID, old := p.create("--tenant", "app-1", "--env", "live", "--name", "backend")
	_, ent := p.create("--tenant", "app-1", "--env", "live", "--plan", "enterprise", "--name", "batch")
	_, dev := p.create("--tenant", "app-1", "--env", "test", "--name", "alice laptop")
	if !strings.HasPrefix(old, "sk_live_") || !strings.HasPrefix(dev, "sk_test_") {
		t.Fatal("keys must be sk_ + live_/test_ + random")
	}
	// No scopes or routes are documented: any valid key reaches any path.
	a := p.call("GET", "/v1/agents", bearerH(old)...).want(t, 200)
	if a.headers["ratelimit-policy"] != `"1m";q=1000;w=60` {
		t.Errorf("standard tier: %q", a.headers["ratelimit-policy"])
	}
	if a := p.call("POST", "/v1/calls", bearerH(ent)...).want(t, 200); a.headers["ratelimit-policy"] != `"1m";q=10000;w=60` {
		t.Errorf("enterprise tier: %q", a.headers["ratelimit-policy"])
	}
	p.call("GET", "/v1/agents", bearerH(dev)...).want(t, 200)
	// 1,000 requests per minute on the standard tier. GCRA refills one
	// request every 60 ms, so the burst may run a few past 1,000 while it
	// is sent; never more than the refill allows. Sixteen senders, so that
	// a loaded machine (the race detector, other tests) still sends faster
	// than the refill.
	start := time.Now()
	allowed, limited := burstUntilLimited(t, p, bearerH(old))
	allowed++ // the first call above
	if refill := int(time.Since(start)/(60*time.Millisecond)) + 1; allowed < 1000 || allowed > 1000+refill {
		t.Errorf("%d allowed before the first 429, want 1000..%d", allowed, 1000+refill)
	}
	if limited.headers["retry-after"] == "" {
		t.Error("429 without Retry-After")
	}
	// Rotate: create a new key, update the app, delete (revoke) the old.
	_, next := p.create("--tenant", "app-1", "--env", "live", "--name", "backend v2")
	p.cli.ok("keys", "revoke", oldID)
	waitUntil(t, 2*time.Second, func() bool { return p.call("GET", "/v1/agents", bearerH(old)...).status == 401 })
	p.call("GET", "/v1/agents", bearerH(next)...).want(t, 200)
	// 'Invalid API key' error
	if a := p.call("GET", "/v1/agents", "Authorization", "Bearer sk_live_"+strings.Repeat("x", 38)).want(t, 401); nested(a)["code"] != "invalid_api_key" {
		t.Errorf("invalid key: %s", a.raw)
	}
}

// TestProfileMaxAI replays the API's documented key conventions (docs/profiles.md).
func TestProfileMaxAI(t *testing.T) {
	p := startProfile(t, "maxai")
	const org = "7e2c8cfe-b7a9-4deb-986d-e7012589e72b"
	_, key := p.create("--tenant", "app-scheduler", "--env", "live", "--scopes", "read:patients,write:patients,read:appointments")
	_, dev := p.create("--tenant", "app-scheduler", "--env", "test", "--scopes", "read:patients")
	if !strings.HasPrefix(key, "max_prd_ak_") || !strings.HasPrefix(dev, "max_dev_ak_") {
		t.Fatalf("prefixes %s %s", key[:11], dev[:11])
	}
	// The clinic installed the app granting read:patients and read:appointments.
	p.cli.ok("grants", "set", "--tenant", "app-scheduler", "--org", org, "--scopes", "read:patients,read:appointments")
	waitUntil(t, 2*time.Second, func() bool {
		return p.call("GET", "/v3/patients", append(bearerH(key), "X-Organization-Id", org)...).status == 200
	})
	// curl -X GET "https://api.maxcare.ai/v3/patients" -H "Authorization: Bearer max_prd_ak_…" -H "X-Organization-Id: 7e2c…"
	a := p.call("GET", "/v3/patients", append(bearerH(key), "X-Organization-Id", org)...).want(t, 200)
	if a.upstream["x-keygate-org"] != org || a.upstream["x-keygate-scopes"] != "read:patients,read:appointments" {
		t.Errorf("effective permissions must be key ∩ installation grant: %v", a.upstream)
	}
	// 403: the key has write:patients, the clinic did not grant it.
	a = p.call("POST", "/v3/patients", append(bearerH(key), "X-Organization-Id", org)...).want(t, 403)
	if keysOf(a.body) != "code,message,trace_id" || a.body["code"] != "forbidden" || a.body["message"] != "Insufficient scope. Required: write:patients" {
		t.Errorf("403 body %s", a.raw)
	}
	// 401 for a missing header, a malformed Bearer, an invalid key.
	for _, h := range [][]string{{"X-Organization-Id", org}, {"Authorization", key, "X-Organization-Id", org}, {"Authorization", "Bearer max_prd_ak_SBA01S", "X-Organization-Id", org}} {
		a := p.call("GET", "/v3/patients", h...).want(t, 401)
		if keysOf(a.body) != "code,message,trace_id" || a.body["code"] != "unauthorized" || a.body["message"] != "Invalid or missing API key" || a.body["trace_id"] == "" {
			t.Errorf("401 body %s", a.raw)
		}
	}
	// Every request must carry X-Organization-Id; the docs give no status
	// for its absence: Keygate's 400 missing_organization, in Max AI's shape.
	if a := p.call("GET", "/v3/patients", bearerH(key)...).want(t, 400); a.body["code"] != "missing_organization" {
		t.Errorf("missing org: %s", a.raw)
	}
	// An organization that has not installed the app.
	if a := p.call("GET", "/v3/patients", append(bearerH(key), "X-Organization-Id", "00000000-0000-4000-8000-000000000000")...).want(t, 403); a.body["code"] != "forbidden" {
		t.Errorf("not installed: %s", a.raw)
	}
	// curl -X GET "https://api.maxcare.ai/v3/marketplace/me" …: answered by Keygate.
	a = p.call("GET", "/v3/marketplace/me", append(bearerH(key), "X-Organization-Id", org)...).want(t, 200)
	if a.body["organization"] != org || a.body["tenant"] != "app-scheduler" || a.body["prefix"] != key[:15] || a.body["env"] != "live" {
		t.Errorf("/v3/marketplace/me: %s", a.raw)
	}
	if strings.Contains(a.raw, key) {
		t.Error("introspection shows the key")
	}
}

// TestProfileMediLoop replays the API's documented key conventions (docs/profiles.md).
func TestProfileMediLoop(t *testing.T) {
	p := startProfile(t, "mediloop")
	// A restricted key: {"patients": ["read"], "encounters": ["read"], "observations": ["read"]}
	_, ro := p.create("--tenant", "dev-app", "--env", "test", "--name", "Read-only Patient Access", "--scopes", "patients:read,encounters:read,observations:read")
	fullID, full := p.create("--tenant", "dev-app", "--env", "live", "--scopes", "patients:read,patients:write,patients:delete,appointments:delete")
	// curl https://api.mediloop.co/api/v1/patients -H "Authorization: Bearer sk_test_…"
	p.call("GET", "/api/v1/patients", bearerH(ro)...).want(t, 200)
	p.call("GET", "/api/v1/encounters/enc_1", bearerH(ro)...).want(t, 200)
	a := p.call("POST", "/api/v1/patients", bearerH(ro)...).want(t, 403)
	if e := nested(a); keysOf(a.body) != "error" || keysOf(e) != "code,message,type" || e["code"] != "insufficient_permissions" || e["message"] != "Key lacks required permissions. Required: patients:write" {
		t.Errorf("403 body %s", a.raw)
	}
	p.call("DELETE", "/api/v1/patients/pat_1234567890", bearerH(full)...).want(t, 200)
	p.call("DELETE", "/api/v1/encounters/enc_1", bearerH(full)...).want(t, 404) // encounters have no delete permission
	// RESPONSE 401 {"error":{"code":"authentication_error","message":"Invalid API key provided","type":"invalid_request_error"}}
	a = p.call("GET", "/api/v1/patients", "Authorization", "Bearer sk_test_51RHO58T100WQd9N1qnXXXXXXXXXXXXXXXXXXXXXX").want(t, 401)
	if !jsonSame(a.raw, `{"error":{"code":"authentication_error","message":"Invalid API key provided","type":"invalid_request_error"}}`) {
		t.Errorf("401 body %s", a.raw)
	}
	if e := nested(p.call("GET", "/api/v1/patients").want(t, 401)); e["code"] != "authentication_error" {
		t.Errorf("missing key: %v", e)
	}
	// Roll: the old key stays valid for the grace (24 h in the profile;
	// 1 s here), then fails as api_key_expired.
	var rolled struct {
		Key string
		Old struct {
			ExpiresAt time.Time `json:"expires_at"`
		}
	}
	json.Unmarshal([]byte(p.cli.ok("keys", "roll", fullID, "--grace", "1s", "--json")), &rolled)
	p.call("GET", "/api/v1/patients", bearerH(rolled.Key)...).want(t, 200)
	waitUntil(t, 3*time.Second, func() bool { return p.call("GET", "/api/v1/patients", bearerH(full)...).status == 401 })
	if e := nested(p.call("GET", "/api/v1/patients", bearerH(full)...)); e["code"] != "api_key_expired" || e["type"] != "invalid_request_error" {
		t.Errorf("expired: %v", e)
	}
	// The default roll grace of this profile is MediLoop's 24 hours.
	cfg, _ := config.Load(p.cli.env["KEYGATE_CONFIG"], nil)
	if cfg.Roll.Grace != 24*time.Hour {
		t.Errorf("roll.grace %v", cfg.Roll.Grace)
	}
}

// TestProfileCashCat replays the API's documented key conventions (docs/profiles.md).
func TestProfileCashCat(t *testing.T) {
	p := startProfile(t, "cashcat")
	id, key := p.create("--tenant", "shop-9", "--env", "live", "--name", "Production Server")
	if !strings.HasPrefix(key, "cc_live_") {
		t.Fatalf("key %s…", key[:8])
	}
	var shown struct {
		Prefix     string     `json:"prefix"`
		Name       string     `json:"name"`
		CreatedAt  time.Time  `json:"created_at"`
		LastUsedAt *time.Time `json:"last_used_at"`
	}
	json.Unmarshal([]byte(p.cli.ok("keys", "show", id, "--json")), &shown)
	if shown.Prefix != key[:15] || len(shown.Prefix) != 15 || shown.Name != "Production Server" || shown.CreatedAt.IsZero() || shown.LastUsedAt != nil {
		t.Errorf("key properties: %+v", shown)
	}
	p.call("GET", "/v1/transactions", bearerH(key)...).want(t, 200)
	// "The last used at timestamp is updated asynchronously."
	waitUntil(t, 3*time.Second, func() bool {
		json.Unmarshal([]byte(p.cli.ok("keys", "show", id, "--json")), &shown)
		return shown.LastUsedAt != nil
	})
	// Keys issued before Keygate: imported by their SHA-256.
	rnd, _ := keys.RandomString(32)
	legacy := "cc_live_" + rnd
	sum := sha256.Sum256([]byte(legacy))
	p.cli.ok("keys", "import", "--sha256", hex.EncodeToString(sum[:]), "--prefix", "cc_live_", "--display-prefix", legacy[:15], "--tenant", "shop-9")
	waitUntil(t, 2*time.Second, func() bool { return p.call("GET", "/v1/transactions", bearerH(legacy)...).status == 200 })
	// Missing authorization header: 401. Invalid API key: 401, also for a
	// revoked key and a malformed one.
	if e := nested(p.call("GET", "/v1/transactions").want(t, 401)); e["code"] != "missing_api_key" {
		t.Errorf("missing header: %v", e)
	}
	p.cli.ok("keys", "revoke", id)
	waitUntil(t, 2*time.Second, func() bool { return p.call("GET", "/v1/transactions", bearerH(key)...).status == 401 })
	for _, k := range []string{key, "cc_live_short", "cc_live_" + strings.Repeat("z", 40)} {
		if e := nested(p.call("GET", "/v1/transactions", bearerH(k)...).want(t, 401)); e["code"] != "invalid_api_key" || e["message"] != "Invalid API key" {
			t.Errorf("key %s…: %v", k[:10], e)
		}
	}
}

func jsonSame(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// burstUntilLimited sends GET /v1/agents from sixteen goroutines until one
// is answered 429, and returns how many were allowed before it and that
// answer.
func burstUntilLimited(t *testing.T, p *profile, headers []string) (int, answer) {
	t.Helper()
	var (
		mu      sync.Mutex
		allowed int
		limited answer
		failed  error
		wg      sync.WaitGroup
	)
	done := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return limited.status != 0 || failed != nil || allowed > 3000
	}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done() {
				a, err := p.try("GET", "/v1/agents", headers...)
				mu.Lock()
				switch {
				case err != nil:
					failed = err
				case a.status == 200:
					allowed++
				case a.status == 429:
					if limited.status == 0 {
						limited = a
					}
				default:
					failed = fmt.Errorf("status %d", a.status)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	if limited.status == 0 {
		t.Fatalf("no 429 after %d requests", allowed)
	}
	return allowed, limited
}
