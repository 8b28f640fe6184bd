package main

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testpg"
)

// TestTwoReplicasRevokeWithinOneSecond: two keygate processes on one
// PostgreSQL; a revoke through the CLI reaches both within 1 s. The poll
// interval is set far above that, so LISTEN/NOTIFY is what delivers it.
func TestTwoReplicasRevokeWithinOneSecond(t *testing.T) {
	env := map[string]string{
		"KEYGATE_DATABASE_URL":           testpg.NewSchema(t, testpg.SharedURL()),
		"KEYGATE_DATABASE_POLL_INTERVAL": "30s",
		"KEYGATE_LOG_LEVEL":              "warn",
	}
	id, key := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
	a, b := startProc(t, env), startProc(t, env)
	for _, p := range []*proc{a, b} {
		if got := p.check(t, key); got != "ok" {
			t.Fatalf("before revoke: %s", got)
		}
	}
	start := time.Now()
	cliProc(t, env, "keys", "revoke", id)
	var wg sync.WaitGroup
	delays := make([]time.Duration, 2)
	for i, p := range []*proc{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p.check(t, key) != "api_key_revoked" {
				if time.Since(start) > 5*time.Second {
					t.Errorf("replica %d still allows the key 5s after the revoke", i)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
			delays[i] = time.Since(start)
		}()
	}
	wg.Wait()
	t.Logf("revocation reached replica A after %v and replica B after %v (measured from the CLI call, including its process start)", delays[0], delays[1])
	for i, d := range delays {
		if d > time.Second {
			t.Errorf("replica %d took %v, more than 1s", i, d)
		}
	}
}

// TestDatabaseOutage stops a private PostgreSQL under a running keygate:
// cached keys keep working, unknown keys get 503 (never 401), /readyz says
// not ready; after the restart it reconnects by itself and follows changes.
func TestDatabaseOutage(t *testing.T) {
	pg := testpg.Start(t)
	env := map[string]string{
		"KEYGATE_DATABASE_URL":           pg.URL(),
		"KEYGATE_DATABASE_POLL_INTERVAL": "100ms",
		"KEYGATE_DATABASE_TIMEOUT":       "500ms",
		"KEYGATE_LOG_LEVEL":              "warn",
	}
	idA, keyA := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
	_, keyB := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
	env["KEYGATE_CACHE_WARM_START"] = "false" // so key B is not cached
	p := startProc(t, env)
	if got := p.check(t, keyA); got != "ok" {
		t.Fatalf("before the outage: %s", got)
	}

	pg.Stop()
	waitUntil(t, 5*time.Second, func() bool { return readyz(p) == http.StatusServiceUnavailable })
	if got := p.check(t, keyA); got != "ok" {
		t.Errorf("cached key during the outage: %s, want ok", got)
	}
	if got := p.check(t, keyB); got != "unavailable" {
		t.Errorf("uncached key during the outage: %s, want unavailable", got)
	}

	pg.Start()
	waitUntil(t, 10*time.Second, func() bool { return readyz(p) == http.StatusOK })
	if got := p.check(t, keyB); got != "ok" {
		t.Errorf("uncached key after recovery: %s", got)
	}
	cliProc(t, env, "keys", "revoke", idA)
	waitUntil(t, 3*time.Second, func() bool { return p.check(t, keyA) == "api_key_revoked" })
}

func readyz(p *proc) int {
	resp, err := http.Get("http://" + p.httpAddr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitUntil(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
