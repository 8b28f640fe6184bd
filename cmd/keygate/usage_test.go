package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/store"
)

// usageTotals reads a key's usage with the CLI and sums its buckets.
func usageTotals(t *testing.T, env map[string]string, id string) (allowed, limited, denied int64) {
	t.Helper()
	var v struct {
		KeyID       string `json:"key_id"`
		Granularity string `json:"granularity"`
		Buckets     []struct {
			Start       time.Time
			Allowed     int64 `json:"allowed"`
			RateLimited int64 `json:"rate_limited"`
			Denied      int64 `json:"denied"`
		} `json:"buckets"`
	}
	out := cliProc(t, env, "keys", "usage", id, "--since", "2h", "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.KeyID != id || v.Granularity != "hour" {
		t.Fatalf("keys usage --json: %v: %s", err, out)
	}
	for _, b := range v.Buckets {
		allowed, limited, denied = allowed+b.Allowed, limited+b.RateLimited, denied+b.Denied
	}
	return allowed, limited, denied
}

// stopProc sends SIGTERM and waits for a clean exit.
func stopProc(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
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
}

// TestUsageSurvivesSIGTERM: with a flush interval far longer than the
// test, every check made before SIGTERM is in the database afterwards,
// on SQLite and on PostgreSQL; keys usage prints them.
func TestUsageSurvivesSIGTERM(t *testing.T) {
	for _, db := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "keygate.db") }},
		{"postgres", func(t *testing.T) string { return testpg.NewSchema(t, testpg.SharedURL()) }},
	} {
		t.Run(db.name, func(t *testing.T) {
			env := map[string]string{
				"KEYGATE_DATABASE_URL":         db.url(t),
				"KEYGATE_USAGE_FLUSH_INTERVAL": "1h",
				"KEYGATE_LOG_LEVEL":            "warn",
			}
			id, key := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
			idW, keyW := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "forms:read")
			p := startProc(t, env)
			for range 25 {
				if got := p.check(t, key); got != "ok" {
					t.Fatalf("check: %s", got)
				}
			}
			for range 4 {
				if got := p.check(t, keyW); got != "insufficient_scope" {
					t.Fatalf("check without the scope: %s", got)
				}
			}
			if a, r, d := usageTotals(t, env, id); a+r+d != 0 {
				t.Fatalf("counts written before the flush interval: %d/%d/%d", a, r, d)
			}
			stopProc(t, p)
			if a, r, d := usageTotals(t, env, id); a != 25 || r != 0 || d != 0 {
				t.Errorf("after SIGTERM: %d/%d/%d, want 25/0/0", a, r, d)
			}
			if a, r, d := usageTotals(t, env, idW); a != 0 || r != 0 || d != 4 {
				t.Errorf("denied key after SIGTERM: %d/%d/%d, want 0/0/4", a, r, d)
			}
			text := cliProc(t, env, "keys", "usage", id)
			lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
			if !strings.HasPrefix(strings.TrimSpace(lines[0]), "HOUR") || !strings.Contains(text, "25") ||
				!strings.Contains(lines[len(lines)-1], "█") || !strings.Contains(lines[len(lines)-1], "decisions per hour") {
				t.Errorf("keys usage:\n%s", text)
			}
		})
	}
}

// TestUsageOutageAndReplicas: two keygate processes on one private
// PostgreSQL, flushing every 200 ms, count checks of the same key; the
// database is stopped for a while in the middle (cached keys are still
// allowed, and counted), then started again. Every check of both
// replicas ends up in the key's usage, once.
func TestUsageOutageAndReplicas(t *testing.T) {
	pg := testpg.Start(t)
	env := map[string]string{
		"KEYGATE_DATABASE_URL":         pg.URL(),
		"KEYGATE_DATABASE_TIMEOUT":     "500ms",
		"KEYGATE_USAGE_FLUSH_INTERVAL": "200ms",
		"KEYGATE_LOG_LEVEL":            "warn",
	}
	id, key := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
	replicas := []*proc{startProc(t, env), startProc(t, env)}
	checks := func(n int) {
		var wg sync.WaitGroup
		for _, p := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					if got := p.check(t, key); got != "ok" {
						t.Errorf("check: %s", got)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	checks(30)
	pg.Stop()
	checks(20)
	time.Sleep(500 * time.Millisecond) // a few failed flushes
	for i, p := range replicas {
		if m := scrape(t, p.httpAddr); m["keygate_usage_flush_failures_total"] == 0 || m["keygate_usage_pending"] == 0 {
			t.Errorf("replica %d during the outage: flush failures %v, pending %v", i, m["keygate_usage_flush_failures_total"], m["keygate_usage_pending"])
		}
	}
	pg.Start()
	checks(10)
	const want = 2 * (30 + 20 + 10)
	var a, r, d int64
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if a, r, d = usageTotals(t, env, id); a >= want {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if a != want || r != 0 || d != 0 {
		t.Errorf("after the outage: %d/%d/%d, want %d/0/0", a, r, d, want)
	}
	for _, p := range replicas {
		stopProc(t, p)
	}
	if a, _, _ := usageTotals(t, env, id); a != want {
		t.Errorf("after both stopped: %d allowed, want %d", a, want)
	}
}

// TestKeysUsageCLI: the table lists the hours with decisions and a
// total, the sparkline draws every hour; bad flags are usage errors, an
// unknown key a failure.
func TestKeysUsageCLI(t *testing.T) {
	c := newCLI(t)
	var k struct{ ID string }
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--json")), &k)
	db, err := store.Open(t.Context(), c.env["KEYGATE_DATABASE_URL"], store.Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h0 := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	if err := db.AddUsage(t.Context(), []store.UsageCount{
		{KeyID: k.ID, Tenant: "acme", Start: h0, Allowed: 120, RateLimited: 3},
		{KeyID: k.ID, Tenant: "acme", Start: h0.Add(2 * time.Hour), Allowed: 7, Denied: 1},
	}); err != nil {
		t.Fatal(err)
	}
	out := c.ok("keys", "usage", k.ID, "--since", "2026-03-04T09:00:00Z", "--until", "2026-03-04T13:00:00Z")
	want := `HOUR               ALLOWED  RATE_LIMITED  DENIED
2026-03-04T10:00Z  120      3             0
2026-03-04T12:00Z  7        0             1
total              127      3             1
(2 hours without decisions not listed)
▁█▁▂ 2026-03-04T09:00Z … 2026-03-04T12:00Z  decisions per hour
`
	if out != want {
		t.Errorf("keys usage:\n%s\nwant\n%s", out, want)
	}
	out = c.ok("keys", "usage", k.ID, "--since", "2026-03-04T00:00:00Z", "--until", "2026-03-05T00:00:00Z", "--granularity", "day")
	if !strings.Contains(out, "2026-03-04  127      3             1") || !strings.Contains(out, "█ 2026-03-04 … 2026-03-04  decisions per day") {
		t.Errorf("keys usage by day:\n%s", out)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"keys", "usage", k.ID, "--since", "yesterday"}, 2, "--since:"},
		{[]string{"keys", "usage", k.ID, "--until", "soon"}, 2, "--until:"},
		{[]string{"keys", "usage", k.ID, "--granularity", "week"}, 2, `granularity: "week" is not hour or day`},
		{[]string{"keys", "usage", k.ID, "--since", "1h", "--until", "2h"}, 2, "since:"},
		{[]string{"keys", "usage", "key_nope"}, 1, "key key_nope not found"},
		{[]string{"keys", "usage"}, 2, "need exactly one argument"},
	} {
		if _, errs, code := c.run(tc.args...); code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("keygate %s: exit %d %q, want %d with %q", strings.Join(tc.args, " "), code, errs, tc.code, tc.msg)
		}
	}
}
