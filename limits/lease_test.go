package limits

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeasingNeverExceedsTheLimit: two replicas leasing batches from one
// Redis bucket allow at most the limit together, lose at most one lease
// per replica, and cost far fewer Redis calls than requests.
func TestLeasingNeverExceedsTheLimit(t *testing.T) {
	const limit = 5000
	plans := map[string][]Window{"big": {{Limit: limit, Period: time.Hour}}}
	prefix := randomPrefix()
	a := newRedisLimiter(t, Config{Plans: plans, KeyPrefix: prefix, LeaseMax: 32})
	b := newRedisLimiter(t, Config{Plans: plans, KeyPrefix: prefix, LeaseMax: 32})
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a
			if g%2 == 1 {
				l = b
			}
			for range (limit + 2000) / 16 {
				r, err := l.Allow(context.Background(), "bucket", "big")
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	calls := a.Stats().RedisCalls + b.Stats().RedisCalls
	errs := a.Stats().RedisErrors + b.Stats().RedisErrors
	t.Logf("%d requests: %d allowed of %d, %d Redis calls, %d failed", limit+2000, allowed.Load(), limit, calls, errs)
	// Never more than the limit. At least the limit less what the two
	// limiters may still hold leased, and less a lease for every call a
	// loaded machine made fail (timed out by the client after Redis spent
	// it: given back later, but perhaps after this count).
	floor := int64(limit) - 2*32 - int64(errs)*32
	if n := allowed.Load(); n > limit || n < floor {
		t.Fatalf("allowed %d, want between %d and %d", n, floor, limit)
	}
	if calls > (limit+2000)/2 {
		t.Errorf("%d Redis calls for %d requests: leasing is not batching", calls, limit+2000)
	}
}

// TestLeaseOnlyForBusyBuckets: a bucket asked for less often than a lease
// lives spends one request a check (a lease would expire unused and its
// remaining count would drop by a batch a request), while one asked for
// again within a lease's life takes a batch.
func TestLeaseOnlyForBusyBuckets(t *testing.T) {
	const limit = 100_000
	plans := map[string][]Window{"big": {{Limit: limit, Period: 24 * time.Hour}}}
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	l := newRedisLimiter(t, Config{Plans: plans, LeaseMax: 32, LeaseTTL: 100 * time.Millisecond, Now: now})

	spend := func(bucket string) Result {
		t.Helper()
		r, err := l.Allow(context.Background(), bucket, "big")
		if err != nil || !r.Allowed {
			t.Fatalf("Allow(%s) = %+v, %v", bucket, r, err)
		}
		return r
	}
	// Sparse: a second between checks, the lease's life ten times over.
	for range 6 {
		spend("sparse")
		advance(time.Second)
	}
	// What Redis holds, read by a limiter that does not lease: six spent
	// and its own (give or take one for GCRA's float arithmetic), not a
	// batch a check.
	probe := newRedisLimiter(t, Config{Plans: plans, KeyPrefix: l.cfg.KeyPrefix, LeaseMax: 1})
	r, err := probe.Allow(context.Background(), "sparse", "big")
	if spent := limit - r.Remaining; err != nil || spent < 7 || spent > 8 {
		t.Fatalf("after 6 sparse checks Redis says %+v, %v: %d spent, want 7", r, err, limit-r.Remaining)
	}
	// Busy: back within the lease's life, so the second check leases and
	// the next thirty are answered without Redis.
	before := l.Stats().RedisCalls
	for range 32 {
		spend("busy")
	}
	if calls := l.Stats().RedisCalls - before; calls != 2 {
		t.Fatalf("32 checks of a busy bucket made %d Redis calls, want 2 (one, then a lease of 32)", calls)
	}
}
