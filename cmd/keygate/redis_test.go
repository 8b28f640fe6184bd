package main

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func testRedisURL() string {
	if u := os.Getenv("KEYGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// TestTwoReplicasShareRedisLimits: two keygate processes on one Redis,
// hammered at once, allow exactly the plan's limit together.
func TestTwoReplicasShareRedisLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis: -short leaves out the tests that need services or tools; make test runs them")
	}
	var b [6]byte
	rand.Read(b[:])
	cfg := filepath.Join(t.TempDir(), "keygate.yaml")
	if err := os.WriteFile(cfg, []byte("plans:\n  test: [{limit: 100, period: 1h}]\n  live: [{limit: 30, period: 1h}, {limit: 1000, period: 24h}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"KEYGATE_CONFIG":           cfg,
		"KEYGATE_DATABASE_URL":     "sqlite:" + filepath.Join(t.TempDir(), "k.db"),
		"KEYGATE_REDIS_URL":        testRedisURL(),
		"KEYGATE_REDIS_KEY_PREFIX": "kgtest:" + hex.EncodeToString(b[:]) + ":",
		"KEYGATE_LOG_LEVEL":        "warn",
	}
	_, key := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
	procs := []*proc{startProc(t, env), startProc(t, env)}
	var allowed, limited atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := procs[g%2]
			for range 20 {
				switch code := p.check(t, key); code {
				case "ok":
					allowed.Add(1)
				case "rate_limited":
					limited.Add(1)
				default:
					t.Errorf("unexpected %s", code)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("160 requests over two replicas: %d allowed, %d rate limited", allowed.Load(), limited.Load())
	if allowed.Load() != 30 {
		t.Fatalf("two replicas allowed %d requests of a 30/h plan together", allowed.Load())
	}
}
