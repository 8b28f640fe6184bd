package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
)

// TestFaultsUnderLoad keeps Checks flowing from several goroutines while
// Redis is killed and restarted, PostgreSQL is stopped and restarted, and
// the key database is made slow. Every phase's decisions must follow the
// configured failure modes, nothing may panic, last_used_at written during
// the outage must land once it ends, and no goroutine may outlive serve.
func TestFaultsUnderLoad(t *testing.T) {
	pg := testpg.Start(t)
	rd := testredis.Start(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		// The test servers' own process waiters are not serve's.
		goleak.IgnoreAnyFunction("github.com/keygate/keygate/internal/testredis.(*Server).start.func1"),
		goleak.IgnoreAnyFunction("os/exec.(*Cmd).Wait"),
		goleak.IgnoreAnyFunction("os/exec.(*Cmd).writerDescriptor.func1"))

	c := newCLI(t)
	c.env["KEYGATE_DATABASE_URL"] = pg.URL()
	c.env["KEYGATE_REDIS_URL"] = rd.URL()
	c.env["KEYGATE_DATABASE_POLL_INTERVAL"] = "100ms"
	// Long enough that a loaded machine's look-ups of unknown keys (the race
	// detector, other tests on the same cores) are not read as an outage;
	// the slow phase outlasts it, so its look-ups do time out.
	c.env["KEYGATE_DATABASE_TIMEOUT"] = "1s"
	c.env["KEYGATE_DATABASE_LAST_USED_FLUSH"] = "200ms"
	c.env["KEYGATE_AUTH_FAILURES_LIMIT"] = "0" // this test measures outages, not brute force
	var ids, ks []string
	for range 8 {
		var cr struct{ ID, Key string }
		json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--env", "live", "--scopes", "patients:read", "--json")), &cr)
		ids, ks = append(ids, cr.ID), append(ks, cr.Key)
	}
	cfg, err := config.Load("", func(k string) (string, bool) { v, ok := c.env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr, httpAddr, stop := startServe(t, cfg)
	waitReady(t, grpcAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client := authv3.NewAuthorizationClient(conn)

	var mu sync.Mutex
	counts := map[string]map[string]int{} // phase → code → n
	phase := "normal"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := ks[(w+i)%len(ks)]
				if i%4 == 3 { // a quarter unknown keys, which need the database
					key, _ = keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
				}
				rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
				resp, err := client.Check(rctx, buildCheckRequest("GET", "/api/v1/patients", "h", "", [][2]string{{"authorization", "Bearer " + key}}, map[string]string{"keygate.scopes": "patients:read"}, false))
				rcancel()
				code := "grpc-error"
				if err == nil {
					code = "ok"
					if d := resp.GetDeniedResponse(); d != nil {
						var b struct{ Error struct{ Code string } }
						json.Unmarshal([]byte(d.GetBody()), &b)
						code = b.Error.Code
					}
				} else if ctx.Err() != nil {
					return
				}
				kind := "known"
				if i%4 == 3 {
					kind = "unknown"
				}
				mu.Lock()
				p := phase + "/" + kind
				if counts[p] == nil {
					counts[p] = map[string]int{}
				}
				counts[p][code]++
				mu.Unlock()
			}
		}()
	}
	set := func(p string) { mu.Lock(); phase = p; mu.Unlock() }
	hold := func(d time.Duration) { time.Sleep(d) }

	hold(700 * time.Millisecond)
	set("redis-killed")
	rd.Kill()
	hold(700 * time.Millisecond)
	set("redis-back")
	rd.Restart()
	hold(1500 * time.Millisecond)
	set("transition")
	pg.Stop()
	hold(300 * time.Millisecond)
	set("db-stopped")
	outageStart := time.Now()
	hold(800 * time.Millisecond)
	set("transition")
	pg.Start()
	hold(1500 * time.Millisecond)
	set("db-back")
	hold(500 * time.Millisecond)
	// A slow database: the keys table locked, so lookups wait.
	lockConn, err := pgx.Connect(context.Background(), pg.URL())
	if err != nil {
		t.Fatal(err)
	}
	tx, _ := lockConn.Begin(context.Background())
	if _, err := tx.Exec(context.Background(), "LOCK TABLE keys IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	set("transition")
	hold(100 * time.Millisecond)
	set("db-slow")
	hold(2500 * time.Millisecond)
	set("transition")
	tx.Rollback(context.Background())
	lockConn.Close(context.Background())
	hold(500 * time.Millisecond)
	set("recovered")
	hold(500 * time.Millisecond)
	cancel()
	wg.Wait()
	conn.Close()

	for p, m := range counts {
		t.Logf("%-22s %v", p, m)
	}
	want := map[string]map[string]bool{
		"normal/known":         {"ok": true},
		"normal/unknown":       {"invalid_api_key": true},
		"redis-killed/known":   {"ok": true}, // on_redis_error: local
		"redis-killed/unknown": {"invalid_api_key": true},
		"redis-back/known":     {"ok": true},
		"db-stopped/known":     {"ok": true}, // cached
		"db-stopped/unknown":   {"unavailable": true},
		"db-back/known":        {"ok": true},
		"db-back/unknown":      {"invalid_api_key": true},
		"db-slow/known":        {"ok": true},
		"db-slow/unknown":      {"unavailable": true},
		"recovered/known":      {"ok": true},
		"recovered/unknown":    {"invalid_api_key": true},
	}
	for p, allowed := range want {
		if len(counts[p]) == 0 {
			t.Errorf("%s: no traffic", p)
		}
		for code, n := range counts[p] {
			if !allowed[code] {
				t.Errorf("%s: %d × %s, want only %v", p, n, code, allowed)
			}
		}
	}

	t.Logf("traffic phases done at %v", time.Since(outageStart))
	// last_used_at written during the outage lands once it is over.
	time.Sleep(500 * time.Millisecond)
	for _, id := range ids {
		var shown struct {
			LastUsedAt *time.Time `json:"last_used_at"`
		}
		json.Unmarshal([]byte(c.ok("keys", "show", id, "--json")), &shown)
		if shown.LastUsedAt == nil || shown.LastUsedAt.Before(outageStart) {
			t.Errorf("key %s: last_used_at %v, want a use from the outage (after %v) or later", id, shown.LastUsedAt, outageStart)
		}
	}
	resp, err := http.Get("http://" + httpAddr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("server not alive after the faults: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	stopStart := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	t.Logf("serve stopped in %v", time.Since(stopStart))

}
