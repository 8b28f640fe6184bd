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
