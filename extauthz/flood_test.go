package extauthz_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// floodChecks sends n Checks with well-formed unknown keys from workers
// goroutines and counts the answers by code.
func floodChecks(t *testing.T, c authv3.AuthorizationClient, n, workers int) map[string]int64 {
	t.Helper()
	var mu sync.Mutex
	codes := map[string]int64{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int64{}
			for next.Add(1) <= int64(n) {
				resp, err := c.Check(context.Background(), req("GET", "/api/v1/patients", bearer(guess()), nil))
				code := "grpc_error"
				if err == nil {
					code = deniedCode(resp)
				}
				local[code]++
			}
			mu.Lock()
			for k, v := range local {
				codes[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return codes
}

// deniedCode is the code in a denial's body, or "ok".
func deniedCode(resp *authv3.CheckResponse) string {
	body := resp.GetDeniedResponse().GetBody()
	if body == "" {
		return "ok"
	}
	_, rest, _ := strings.Cut(body, `"code":"`)
	code, _, _ := strings.Cut(rest, `"`)
	return code
}

// TestFloodKeepsKeysAllowed is the attack end to end, with no
// per-address failure limit (as when the limiter cannot tell the clients
// apart): max_keys 128, 100 keys warm-loaded from PostgreSQL, 5,000 Checks
// with well-formed unknown keys. Afterwards every key is still allowed
// from memory, and still allowed with PostgreSQL stopped; unknown keys are
// then 503 with Retry-After, never 401.
func TestFloodKeepsKeysAllowed(t *testing.T) {
	pg := testpg.Start(t)
	const n = 100
	var valid []string
	e := newEnv(t, envOpts{routes: testRoutes, dbURL: pg.URL(), cache: cache.Config{MaxKeys: 128, QueryTimeout: 5 * time.Second},
		seed: func(svc *admin.Service) {
			for range n {
				c, err := svc.Create(context.Background(), admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
				if err != nil {
					t.Fatal(err)
				}
				valid = append(valid, c.Key)
			}
		}})
	if !e.cache.Complete() {
		t.Fatal("the cache is not complete after the warm start")
	}
	got := floodChecks(t, e.client, 50*n, 8)
	if got["invalid_api_key"] != 50*n {
		t.Fatalf("flood answers %v, want %d invalid_api_key", got, 50*n)
	}
	st := e.cache.Stats()
	t.Logf("flood of %d unknown keys: %d database look-ups, %d answered unknown over the budget", 50*n, st.Misses, st.OverBudgetUnknown)

	for i, k := range valid {
		if resp := e.check(req("GET", "/api/v1/patients", bearer(k), nil)); resp.GetOkResponse() == nil {
			t.Fatalf("key %d after the flood: %v", i, resp.GetStatus())
		}
	}
	if after := e.cache.Stats(); after.Misses != st.Misses || after.Evictions != 0 {
		t.Fatalf("the keys cost %d database look-ups after the flood; %d evictions", after.Misses-st.Misses, after.Evictions)
	}

	pg.Stop()
	waitFor(t, func() bool { return !e.cache.DBUp() })
	for i, k := range valid {
		if resp := e.check(req("GET", "/api/v1/patients", bearer(k), nil)); resp.GetOkResponse() == nil {
			t.Fatalf("key %d with the key database stopped: %v", i, resp.GetStatus())
		}
	}
	_, h := wantDenied(t, e.check(req("GET", "/api/v1/patients", bearer(guess()), nil)), 503, "unavailable", codes.Unavailable)
	if ra, _ := strconv.Atoi(h["retry-after"]); ra < 1 {
		t.Fatalf("Retry-After %q", h["retry-after"])
	}
	if got := floodChecks(t, e.client, 2000, 8); got["unavailable"] != 2000 {
		t.Fatalf("unknown keys with the key database stopped: %v, want only unavailable", got)
	}
}

// TestNewKeyAllowedDuringFlood: a flood keeps this replica's look-up
// budget spent (10 a second) while a key is created through another
// connection to the same PostgreSQL, as another replica or the CLI does.
// LISTEN/NOTIFY brings it (the poll interval is an hour) and it is allowed
// without waiting for the budget.
func TestNewKeyAllowedDuringFlood(t *testing.T) {
	url := testpg.NewSchema(t, testpg.SharedURL())
	e := newEnv(t, envOpts{routes: testRoutes, dbURL: url, cache: cache.Config{MissLookups: 10, PollInterval: time.Hour}})
	waitFor(t, func() bool { return e.cache.Complete() })

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				e.client.Check(ctx, req("GET", "/api/v1/patients", bearer(guess()), nil))
			}
		}()
	}
	waitFor(t, func() bool { return e.cache.Stats().OverBudgetUnknown > 0 })

	other, err := store.Open(context.Background(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cli, err := admin.New(admin.Config{Formats: mustFormats(t), Hasher: keys.NewHasher(nil), Plans: []string{"live"},
		ValidScope: func(string) error { return nil }, Grace: time.Hour}, other)
	if err != nil {
		t.Fatal(err)
	}
	created, err := cli.Create(context.Background(), admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	spent := e.cache.Stats().OverBudgetUnknown
	waitFor(t, func() bool {
		return e.check(req("GET", "/api/v1/patients", bearer(created.Key), nil)).GetOkResponse() != nil
	})
	t.Logf("a key created through another connection was allowed %v later, during the flood", time.Since(start))
	if e.cache.Stats().OverBudgetUnknown == spent {
		t.Fatal("the flood was not spending the budget meanwhile")
	}
}

func mustFormats(t *testing.T) *keys.Formats {
	t.Helper()
	f, err := keys.NewFormats([]keys.Format{{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestFloodOnPartialCache: with more active keys than max_keys the cache
// cannot vouch that a miss is unknown, so misses over the look-up budget
// are 503 unavailable with Retry-After — counted by the cache, without a
// log line per request — while the keys it holds keep working.
func TestFloodOnPartialCache(t *testing.T) {
	var valid []string
	e := newEnv(t, envOpts{routes: testRoutes, cache: cache.Config{MaxKeys: 20, MissLookups: 1, QueryTimeout: 5 * time.Second},
		seed: func(svc *admin.Service) {
			for range 30 {
				c, err := svc.Create(context.Background(), admin.CreateRequest{Tenant: "acme", Env: keys.EnvLive, Scopes: []string{"patients:read"}})
				if err != nil {
					t.Fatal(err)
				}
				valid = append(valid, c.Key)
			}
		}})
	if e.cache.Complete() {
		t.Fatal("30 active keys in a cache of 20, and it says it holds them all")
	}
	got := floodChecks(t, e.client, 200, 4)
	if got["unavailable"] == 0 || got["unavailable"]+got["invalid_api_key"] != 200 {
		t.Fatalf("flood answers %v, want unavailable (and invalid_api_key within the budget)", got)
	}
	if st := e.cache.Stats(); int64(st.OverBudgetUnavailable) != got["unavailable"] {
		t.Fatalf("%d over-budget answers counted, %d sent", st.OverBudgetUnavailable, got["unavailable"])
	}
	if n := strings.Count(e.logs.String(), "key lookup failed"); n != 0 {
		t.Fatalf("%d log lines for misses over the budget, want none", n)
	}
	waitFor(t, func() bool {
		resp := e.check(req("GET", "/api/v1/patients", bearer(guess()), nil))
		if deniedCode(resp) != "unavailable" {
			return false
		}
		_, h := wantDenied(t, resp, 503, "unavailable", codes.Unavailable)
		if ra, _ := strconv.Atoi(h["retry-after"]); ra < 1 {
			t.Fatalf("Retry-After %q", h["retry-after"])
		}
		return true
	})
	allowed := 0
	for _, k := range valid {
		if e.check(req("GET", "/api/v1/patients", bearer(k), nil)).GetOkResponse() != nil {
			allowed++
		}
	}
	if allowed < 20 {
		t.Fatalf("%d of the 20 cached keys allowed", allowed)
	}
}
