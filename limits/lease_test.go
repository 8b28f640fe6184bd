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
	t.Logf("%d requests: %d allowed of %d, %d Redis calls", limit+2000, allowed.Load(), limit, calls)
	if n := allowed.Load(); n > limit || n < limit-2*32 {
		t.Fatalf("allowed %d, want between %d and %d", n, limit-2*32, limit)
	}
	if calls > (limit+2000)/2 {
		t.Errorf("%d Redis calls for %d requests: leasing is not batching", calls, limit+2000)
	}
}

// TestRoundTripsPerCheck counts the commands reaching Redis: an allowed
// request costs at most one per window of its plan — exactly one each for
// a bucket near its limit (no leasing), fewer far from it — and a request
// of a bucket known to be over its limit costs none.
func TestRoundTripsPerCheck(t *testing.T) {
	t.Parallel()
	plans := map[string][]Window{
		"near":       {{Limit: 200, Period: time.Hour}},                                       // within the exact zone
		"near-multi": {{Limit: 200, Period: time.Hour}, {Limit: 300, Period: 24 * time.Hour}}, // two windows
		"far":        {{Limit: 1 << 20, Period: time.Hour}},                                   // leased
		"far-multi":  {{Limit: 1 << 20, Period: time.Hour}, {Limit: 1 << 21, Period: 24 * time.Hour}},
	}
	cases := []struct {
		plan        string
		perCheckMax float64 // commands per allowed check, at most
		perCheckMin float64 // and at least
	}{
		{"near", 1, 1},
		{"near-multi", 2, 2},
		{"far", 0.2, 0},
		{"far-multi", 0.4, 0},
	}
	for _, c := range cases {
		t.Run(c.plan, func(t *testing.T) {
			t.Parallel()
			l := newRedisLimiter(t, Config{Plans: plans})
			// Load the scripts first: the first call of each may cost an
			// EVALSHA and an EVAL.
			mustAllow(t, l, "warm", c.plan)
			hook := &countHook{}
			l.rdb.AddHook(hook)
			const n = 150
			for range n {
				if r := mustAllow(t, l, "b", c.plan); !r.Allowed {
					t.Fatalf("denied within the limit: %+v", r)
				}
			}
			per := float64(hook.n.Load()) / n
			t.Logf("%s: %.2f Redis commands per allowed check", c.plan, per)
			if per > c.perCheckMax || per < c.perCheckMin {
				t.Fatalf("%.2f Redis commands per allowed check, want between %.2f and %.2f", per, c.perCheckMin, c.perCheckMax)
			}
		})
	}
}
