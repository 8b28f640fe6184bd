package limits

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testredis"
)

// hammerFor is hammer for a key of tenant.
func hammerFor(t testing.TB, l *Limiter, bucket, tenant, plan string, g, n int) int64 {
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for range n {
				r, err := l.AllowFor(context.Background(), bucket, tenant, plan)
				if err != nil {
					t.Errorf("AllowFor(%s, %s): %v", bucket, tenant, err)
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return allowed.Load()
}

// tenantPlans: "shared" has a tenant window only; "mixed" a per-key
// window tighter than its tenant window; "loose" a per-key window looser
// than its tenant one, of the same period.
var tenantPlans = map[string][]Window{
	"shared": {{Limit: 25, Period: time.Hour, Per: PerTenant}},
	"mixed":  {{Limit: 5, Period: time.Hour}, {Limit: 12, Period: 24 * time.Hour, Per: PerTenant}},
	"loose":  {{Limit: 50, Period: time.Hour, Per: PerKey}, {Limit: 9, Period: time.Hour, Per: PerTenant}},
}

// tenantBackends runs f on two limiters sharing their state: two replicas
// on the shared Redis, two on a three-node Cluster, or one in-process
// limiter twice (in process, nothing is shared between limiters).
func tenantBackends(t *testing.T, f func(t *testing.T, a, b *Limiter)) {
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		a := newRedisLimiter(t, Config{Plans: tenantPlans})
		f(t, a, newRedisLimiter(t, Config{Plans: tenantPlans, KeyPrefix: a.cfg.KeyPrefix}))
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		if testing.Short() {
			t.Skip("needs redis-server: -short leaves out the tests that need services or tools")
		}
		c := testredis.StartCluster(t, 3)
		a := newRedisLimiter(t, Config{Plans: tenantPlans, RedisURL: c.URL()})
		f(t, a, newRedisLimiter(t, Config{Plans: tenantPlans, RedisURL: c.URL(), KeyPrefix: a.cfg.KeyPrefix}))
	})
	t.Run("local", func(t *testing.T) {
		t.Parallel()
		l := newLocalLimiter(t, tenantPlans)
		f(t, l, l)
	})
}

// TestTenantWindowShared: the keys of one tenant, on two replicas, share a
// per-tenant window exactly; another tenant's keys are not touched by it.
func TestTenantWindowShared(t *testing.T) {
	t.Parallel()
	tenantBackends(t, func(t *testing.T, a, b *Limiter) {
		var got [4]int64
		var wg sync.WaitGroup
		for i, bucket := range []string{"key_a1", "key_a2"} {
			for j, l := range []*Limiter{a, b} {
				wg.Go(func() { got[2*i+j] = hammerFor(t, l, bucket, "acme", "shared", 4, 10) })
			}
		}
		wg.Wait()
		if n := got[0] + got[1] + got[2] + got[3]; n != 25 {
			t.Fatalf("two keys of one tenant on two limiters allowed %v = %d, want exactly 25", got, n)
		}
		// A key of the tenant that has not been used yet finds it spent.
		if r, err := a.AllowFor(context.Background(), "key_a3", "acme", "shared"); err != nil || r.Allowed {
			t.Fatalf("a fresh key of the tenant: %+v, %v; want a denial", r, err)
		}
		if n := hammerFor(t, b, "key_b1", "globex", "shared", 2, 20); n != 25 {
			t.Fatalf("another tenant's key allowed %d, want its own 25", n)
		}
	})
}

// TestPerKeyWindowWithTenant: in a plan with both kinds, all the keys
// together are held to the tenant's window, exactly, and each key still to
// its own. (While keys are also over their own windows, a request those
// deny holds a moment of the tenant's window until its refund lands, so a
// concurrent request may be denied for it: never allowed past a limit.)
func TestPerKeyWindowWithTenant(t *testing.T) {
	t.Parallel()
	tenantBackends(t, func(t *testing.T, a, b *Limiter) {
		buckets := []string{"key_1", "key_2", "key_3", "key_4"}
		got := make([]int64, len(buckets))
		var wg sync.WaitGroup
		for i, bucket := range buckets {
			l := []*Limiter{a, b}[i%2]
			wg.Go(func() { got[i] = hammerFor(t, l, bucket, "acme", "mixed", 3, 1) })
		}
		wg.Wait()
		if total := got[0] + got[1] + got[2] + got[3]; total != 12 {
			t.Fatalf("keys allowed %v = %d, want all 12, the tenant's window", got, total)
		}
		for i, bucket := range append(buckets, "key_5") {
			r, err := []*Limiter{a, b}[i%2].AllowFor(context.Background(), bucket, "acme", "mixed")
			if err != nil || r.Allowed || !r.Window.Tenant() {
				t.Fatalf("%s past the tenant's window: %+v, %v", bucket, r, err)
			}
		}
		// Alone, a key still stops at its own window.
		if n := hammerFor(t, a, "key_x", "initech", "mixed", 2, 10); n != 5 {
			t.Fatalf("a lone key allowed %d, want its window's 5", n)
		}
	})
}

// TestTenantDenialSpendsNothing: requests a key's window denies leave the
// tenant's window as it was, and those the tenant's window denies leave
// the key's.
func TestTenantDenialSpendsNothing(t *testing.T) {
	t.Parallel()
	tenantBackends(t, func(t *testing.T, a, b *Limiter) {
		ctx := context.Background()
		if n := hammerFor(t, a, "key_1", "acme", "mixed", 1, 20); n != 5 {
			t.Fatalf("key_1 allowed %d, want 5", n)
		}
		// 15 denials by key_1's window; the tenant's has 12-5 = 7 left.
		// (Asked of the same replica: a refund is sent after the denial's
		// answer, in that replica's next pipeline.)
		r, err := a.AllowFor(ctx, "key_2", "acme", "mixed")
		if err != nil || !r.Allowed {
			t.Fatalf("key_2: %+v, %v", r, err)
		}
		if got := r.Windows[1]; !got.Window.Tenant() || got.Remaining != 6 {
			t.Fatalf("tenant window after key_2's request = %+v, want 6 remaining", got)
		}
		// "loose": the tenant's 9 run out first; key_3's own window is
		// spent only by what was allowed.
		if n := hammerFor(t, a, "key_3", "umbrella", "loose", 1, 30); n != 9 {
			t.Fatalf("key_3 allowed %d, want the tenant's 9", n)
		}
		r, err = a.AllowFor(ctx, "key_3", "umbrella", "loose")
		if err != nil || r.Allowed || !r.Window.Tenant() {
			t.Fatalf("key_3 over the tenant's window: %+v, %v", r, err)
		}
		r, err = a.AllowFor(ctx, "key_3", "other", "loose")
		if err != nil || !r.Allowed {
			t.Fatalf("key_3 under another tenant: %+v, %v", r, err)
		}
		if got := r.Windows[0]; got.Window.Tenant() || got.Remaining != 50-9-1 {
			t.Fatalf("key_3's own window = %+v, want %d remaining (21 denials spent nothing)", got, 50-9-1)
		}
	})
}

// TestTenantDenyCache: once a tenant's window denies on Redis, the
// tenant's other keys are denied from memory, without a round trip.
func TestTenantDenyCache(t *testing.T) {
	t.Parallel()
	l := newRedisLimiter(t, Config{Plans: tenantPlans})
	ctx := context.Background()
	if n := hammerFor(t, l, "key_1", "acme", "shared", 1, 26); n != 25 {
		t.Fatalf("allowed %d, want 25", n)
	}
	l.deny.Wait()
	calls, lden := l.Stats().RedisCalls, l.Stats().LocalDenials
	for _, bucket := range []string{"key_2", "key_3", "key_4"} {
		r, err := l.AllowFor(ctx, bucket, "acme", "shared")
		if err != nil || r.Allowed || r.RetryAfter <= 0 {
			t.Fatalf("%s: %+v, %v; want a denial", bucket, r, err)
		}
	}
	if d := l.Stats().RedisCalls - calls; d != 0 {
		t.Errorf("%d Redis calls for the tenant's other keys, want 0", d)
	}
	if d := l.Stats().LocalDenials - lden; d != 3 {
		t.Errorf("LocalDenials grew by %d, want 3", d)
	}
	if r, err := l.AllowFor(ctx, "key_2", "globex", "shared"); err != nil || !r.Allowed {
		t.Errorf("another tenant: %+v, %v", r, err)
	}
}

// TestTenantRedisKeys: a tenant's buckets are a hash tag of their own,
// "{t:TENANT}", so tenants spread over a Cluster's slots, apart from the
// keys' buckets; a check that spends in both reaches both nodes.
func TestTenantRedisKeys(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3)
	l := newRedisLimiter(t, Config{Plans: tenantPlans, RedisURL: c.URL()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hour, day := tenantPlans["mixed"][0], tenantPlans["mixed"][1]
	slots := map[int64]bool{}
	for _, tenant := range []string{"acme", "globex", "initech", "umbrella", "hooli", "soylent"} {
		if r, err := l.AllowFor(ctx, "key_"+tenant, tenant, "mixed"); err != nil || !r.Allowed {
			t.Fatalf("AllowFor: %+v, %v", r, err)
		}
		tk := "rate:" + l.redisKey(tenantBucket(tenant, "mixed"), day)
		if !strings.Contains(tk, "{t:"+tenant+"}:mixed:tenant-24h") {
			t.Fatalf("tenant window's key %q", tk)
		}
		kk := "rate:" + l.redisKey("key_"+tenant, hour)
		for _, k := range []string{tk, kk} {
			if n, err := l.rdb.Exists(ctx, k).Result(); err != nil || n != 1 {
				t.Fatalf("EXISTS %s = %d, %v", k, n, err)
			}
		}
		s, err := l.rdb.ClusterKeySlot(ctx, tk).Result()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := l.rdb.ClusterKeySlot(ctx, "t:"+tenant).Result()
		if s != want {
			t.Fatalf("slot of %s = %d, want %d, the slot of its hash tag", tk, s, want)
		}
		slots[s] = true
	}
	if len(slots) < 2 {
		t.Fatalf("six tenants in %d slot(s): tenants do not spread", len(slots))
	}
}

// TestAllowForWithoutTenant: a plan with a tenant window needs a tenant;
// a plan without one ignores it.
func TestAllowForWithoutTenant(t *testing.T) {
	t.Parallel()
	l := newLocalLimiter(t, map[string][]Window{"shared": tenantPlans["shared"], "key": {{Limit: 1, Period: time.Hour}}})
	if _, err := l.Allow(context.Background(), "key_1", "shared"); !errors.Is(err, ErrNoTenant) {
		t.Fatalf("Allow on a tenant plan: %v, want ErrNoTenant", err)
	}
	if r, err := l.AllowFor(context.Background(), "key_1", "acme", "key"); err != nil || !r.Allowed || r.Windows[0].Window.Tenant() {
		t.Fatalf("AllowFor on a per-key plan: %+v, %v", r, err)
	}
}

// TestTenantHeaders: a tenant window is named "tenant-PERIOD" and carries
// the tenant, never a key, as its partition key.
func TestTenantHeaders(t *testing.T) {
	t.Parallel()
	l := newLocalLimiter(t, tenantPlans)
	if got, want := l.PolicyFor("mixed", "acme"), `"1h";q=5;w=3600, "tenant-24h";q=12;w=86400;pk=:YWNtZQ==:`; got != want {
		t.Errorf("PolicyFor = %q, want %q", got, want)
	}
	if got, want := l.PolicyOf("mixed"), `"1h";q=5;w=3600, "tenant-24h";q=12;w=86400`; got != want {
		t.Errorf("PolicyOf = %q, want %q", got, want)
	}
	r, err := l.AllowFor(context.Background(), "key_1", "acme", "mixed")
	if err != nil {
		t.Fatal(err)
	}
	state := string(AppendState(nil, r, "acme"))
	if want := `"1h";r=4;t=720, "tenant-24h";r=11;t=7200;pk=:YWNtZQ==:`; state != want {
		t.Errorf("RateLimit = %q, want %q", state, want)
	}
	if strings.Contains(state, "a2V5XzE") { // base64 of "key_1"
		t.Error("the key is a partition key")
	}
}
