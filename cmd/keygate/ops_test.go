package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/keys"
)

func httpDo(t *testing.T, method, url, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestAdminAPI(t *testing.T) {
	c := newCLI(t)
	c.env["KEYGATE_ADMIN_TOKEN"] = "test-admin-token"
	cfg, err := config.Load("", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database.PollInterval = 50 * time.Millisecond
	grpcAddr, httpAddr, _ := startServe(t, cfg)
	base := "http://" + httpAddr + "/admin/v1"
	tok := "test-admin-token"

	for _, bad := range []string{"", "wrong", "test-admin-token-but-longer"} {
		if code, _ := httpDo(t, "GET", base+"/keys", bad, ""); code != 401 {
			t.Errorf("token %q: status %d, want 401", bad, code)
		}
	}
	code, created := httpDo(t, "POST", base+"/keys", tok, `{"tenant":"acme","env":"live","scopes":["patients:read"],"expires_in":"720h"}`)
	if code != 201 || created["key"] == nil || created["id"] == nil || created["expires_at"] == nil {
		t.Fatalf("create: %d %v", code, created)
	}
	key, id := created["key"].(string), created["id"].(string)
	waitReady(t, grpcAddr)
	out, _, exit := c.run("check", "--addr", grpcAddr, "--key", key, "--ext", "keygate.scopes=patients:read")
	if exit != 0 {
		t.Fatalf("key from the admin API denied:\n%s", out)
	}
	if code, list := httpDo(t, "GET", base+"/keys?tenant=acme", tok, ""); code != 200 || strings.Contains(mustJSON(list), key) || !strings.Contains(mustJSON(list), id) {
		t.Errorf("list: %d %v", code, list)
	}
	if code, shown := httpDo(t, "GET", base+"/keys/"+id, tok, ""); code != 200 || shown["key"] != nil || shown["status"] != "active" {
		t.Errorf("show: %d %v", code, shown)
	}
	code, rolled := httpDo(t, "POST", base+"/keys/"+id+"/roll", tok, `{"grace":"1h"}`)
	if code != 201 || rolled["key"] == nil || rolled["old"].(map[string]any)["replaced_by"] != rolled["id"] {
		t.Errorf("roll: %d %v", code, rolled)
	}
	if code, rev := httpDo(t, "POST", base+"/keys/"+rolled["id"].(string)+"/revoke", tok, ""); code != 200 || rev["status"] != "revoked" {
		t.Errorf("revoke: %d %v", code, rev)
	}
	if code, g := httpDo(t, "PUT", base+"/grants/acme/clinic-1", tok, `{"scopes":["patients:read"]}`); code != 200 || g["org"] != "clinic-1" {
		t.Errorf("grant set: %d %v", code, g)
	}
	if code, gs := httpDo(t, "GET", base+"/grants?tenant=acme", tok, ""); code != 200 || !strings.Contains(mustJSON(gs), "clinic-1") {
		t.Errorf("grant list: %d %v", code, gs)
	}
	if code, _ := httpDo(t, "DELETE", base+"/grants/acme/clinic-1", tok, ""); code != 200 {
		t.Errorf("grant revoke: %d", code)
	}
	// Same validation and errors as the CLI.
	for _, tc := range []struct {
		method, path, body string
		code               int
		errCode            string
	}{
		{"POST", "/keys", `{"tenant":""}`, 400, "invalid_request"},
		{"POST", "/keys", `{"tenant":"acme","scopes":["Patients"]}`, 400, "invalid_request"},
		{"POST", "/keys", `{"tenant":"acme","bogus":1}`, 400, "invalid_request"},
		{"POST", "/keys", `not json`, 400, "invalid_request"},
		{"GET", "/keys/key_nope", "", 404, "not_found"},
		{"POST", "/keys/key_nope/revoke", "", 404, "not_found"},
		{"DELETE", "/grants/acme/nowhere", "", 404, "not_found"},
	} {
		code, body := httpDo(t, tc.method, base+tc.path, tok, tc.body)
		if code != tc.code || body["error"] == nil || body["error"].(map[string]any)["code"] != tc.errCode {
			t.Errorf("%s %s %s: %d %v, want %d %s", tc.method, tc.path, tc.body, code, body, tc.code, tc.errCode)
		}
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestMetrics runs Checks and reads the counters back from /metrics.
func TestMetrics(t *testing.T) {
	c := newCLI(t)
	var created struct{ Key string }
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--env", "live", "--scopes", "patients:read", "--json")), &created)
	cfg, err := config.Load("", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr, _ := startServe(t, cfg)
	waitReady(t, grpcAddr)
	before := scrape(t, httpAddr)
	for range 3 {
		c.run("check", "--addr", grpcAddr, "--key", created.Key, "--ext", "keygate.scopes=patients:read")
	}
	for range 2 {
		c.run("check", "--addr", grpcAddr, "--ext", "keygate.scopes=patients:read")
	}
	unknown, err := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	c.run("check", "--addr", grpcAddr, "--key", unknown, "--ext", "keygate.scopes=patients:read")
	after := scrape(t, httpAddr)
	delta := func(name string) float64 { return after[name] - before[name] }
	if d := delta(`keygate_decisions_total{code="ok"}`); d != 3 {
		t.Errorf("ok decisions +%v, want +3", d)
	}
	if d := delta(`keygate_decisions_total{code="missing_api_key"}`); d != 2 {
		t.Errorf("missing_api_key decisions +%v, want +2", d)
	}
	if d := delta("keygate_check_duration_seconds_count"); d < 5 {
		t.Errorf("latency histogram count +%v, want ≥ 5", d)
	}
	if after["keygate_cache_hits_total"] < 3 || after["keygate_database_up"] != 1 || after["keygate_cache_ready"] != 1 {
		t.Errorf("cache metrics: hits %v, db up %v, ready %v", after["keygate_cache_hits_total"], after["keygate_database_up"], after["keygate_cache_ready"])
	}
	// The cache holds every key; the unknown key was looked up (within
	// the budget) and is remembered.
	if after["keygate_cache_complete"] != 1 || after["keygate_cache_negative_entries"] != 1 || delta("keygate_cache_misses_total") != 1 ||
		after["keygate_cache_evictions_total"] != 0 {
		t.Errorf("cache metrics: complete %v, negative entries %v, misses +%v, evictions %v", after["keygate_cache_complete"],
			after["keygate_cache_negative_entries"], delta("keygate_cache_misses_total"), after["keygate_cache_evictions_total"])
	}
	for _, answer := range []string{"invalid_api_key", "unavailable"} {
		if v, ok := after[`keygate_cache_miss_lookups_over_budget_total{answer="`+answer+`"}`]; !ok || v != 0 {
			t.Errorf("over-budget misses answered %s: %v (exported %v), want 0", answer, v, ok)
		}
	}
	if _, ok := after["keygate_build_info"]; !ok {
		t.Error("no keygate_build_info")
	}
	if _, ok := after["keygate_redis_up"]; !ok {
		t.Error("no keygate_redis_up")
	}
}

// scrape reads /metrics into name{labels} → value.
func scrape(t *testing.T, httpAddr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if strings.HasPrefix(name, "keygate_build_info") {
			name = "keygate_build_info"
		}
		out[name] = v
	}
	return out
}

// TestSIGTERMDrainsInFlightCheck holds a Check in flight (its key lookup
// waits on a table lock), sends SIGTERM, and expects the Check to get its
// real answer, the pending last_used_at to be flushed, and exit status 0.
func TestSIGTERMDrainsInFlightCheck(t *testing.T) {
	dbURL := testpg.NewSchema(t, testpg.SharedURL())
	env := map[string]string{
		"KEYGATE_DATABASE_URL":             dbURL,
		"KEYGATE_CACHE_WARM_START":         "false",
		"KEYGATE_DATABASE_LAST_USED_FLUSH": "1h",
		"KEYGATE_DATABASE_TIMEOUT":         "10s",
		"KEYGATE_LOG_LEVEL":                "info",
	}
	id, key := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
	p := startProc(t, env)

	ctx := context.Background()
	lock, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE keys IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	answer := make(chan string, 1)
	go func() { answer <- p.check(t, key) }()
	time.Sleep(300 * time.Millisecond) // the Check is now waiting on the lock
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case a := <-answer:
		t.Fatalf("the Check finished before the lock was released: %s", a)
	default:
	}
	tx.Rollback(ctx) // release: the in-flight Check completes
	select {
	case a := <-answer:
		if a != "ok" {
			t.Fatalf("in-flight Check answered %q, want ok", a)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight Check never answered")
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("keygate exited with %v after SIGTERM:\n%s", err, p.logs.String())
		}
		p.done <- nil // for the cleanup
	case <-time.After(20 * time.Second):
		t.Fatal("keygate did not exit after SIGTERM")
	}
	var shown struct {
		LastUsedAt *time.Time `json:"last_used_at"`
	}
	json.Unmarshal([]byte(cliProc(t, env, "keys", "show", id, "--json")), &shown)
	if shown.LastUsedAt == nil {
		t.Error("last_used_at of the drained Check was not flushed at shutdown")
	}
	if !bytes.Contains([]byte(p.logs.String()), []byte("draining")) {
		t.Error("no shutdown log line")
	}
}
