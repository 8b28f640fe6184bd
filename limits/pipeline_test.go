package limits

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// tripHook counts what a client sends: round trips (a pipeline or a lone
// command) and commands.
type tripHook struct{ trips, cmds atomic.Int64 }

func (h *tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (h *tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		h.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestRoundTripsPerCheck counts what reaches Redis. An allowed check
// costs one command per window of its plan near the limit (no leasing),
// fewer far from it, and all of a check's windows travel in one round
// trip: one check alone costs one round trip, two windows included;
// concurrent checks share round trips.
func TestRoundTripsPerCheck(t *testing.T) {
	t.Parallel()
	plans := map[string][]Window{
		"near":       {{Limit: 200, Period: time.Hour}},                                       // within the exact zone
		"near-multi": {{Limit: 200, Period: time.Hour}, {Limit: 300, Period: 24 * time.Hour}}, // two windows
		"far":        {{Limit: 1 << 20, Period: time.Hour}},                                   // leased
		"far-multi":  {{Limit: 1 << 20, Period: time.Hour}, {Limit: 1 << 21, Period: 24 * time.Hour}},
	}
	cases := []struct {
		plan       string
		goroutines int     // 1: one check at a time
		cmdsMax    float64 // commands per allowed check, at most
		cmdsMin    float64 // and at least
		tripsMax   float64 // round trips per allowed check, at most
		tripsMin   float64 // and at least
	}{
		{"near", 1, 1, 1, 1, 1},
		{"near-multi", 1, 2, 2, 1, 1},
		{"far", 1, 0.2, 0, 0.2, 0},
		{"far-multi", 1, 0.4, 0, 0.2, 0},
		{"near-multi", 16, 2, 2, 1, 0},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%d", c.plan, c.goroutines), func(t *testing.T) {
			t.Parallel()
			l := newRedisLimiter(t, Config{Plans: plans})
			// Load the scripts first: the first call of each costs an
			// EVALSHA and an EVAL.
			mustAllow(t, l, "warm", c.plan)
			hook := &tripHook{}
			l.rdb.AddHook(hook)
			const perGoroutine = 150
			var wg sync.WaitGroup
			for g := range c.goroutines {
				wg.Go(func() {
					for k := range perGoroutine {
						// Concurrent checks of many buckets, each near its limit.
						bucket := fmt.Sprintf("b-%d-%d", g, k%10)
						if r, err := l.Allow(context.Background(), bucket, c.plan); err != nil || !r.Allowed {
							t.Errorf("Allow = %+v, %v; want allowed within the limit", r, err)
							return
						}
					}
				})
			}
			wg.Wait()
			n := float64(c.goroutines * perGoroutine)
			cmds, trips := float64(hook.cmds.Load())/n, float64(hook.trips.Load())/n
			t.Logf("%s, %d at once: %.3f commands and %.3f round trips per allowed check", c.plan, c.goroutines, cmds, trips)
			if cmds > c.cmdsMax || cmds < c.cmdsMin {
				t.Errorf("%.3f Redis commands per allowed check, want between %.2f and %.2f", cmds, c.cmdsMin, c.cmdsMax)
			}
			if trips > c.tripsMax || trips < c.tripsMin {
				t.Errorf("%.3f round trips per allowed check, want between %.2f and %.2f", trips, c.tripsMin, c.tripsMax)
			}
			if st := l.Stats(); float64(st.RedisRoundTrips) > float64(hook.trips.Load())+1 {
				t.Errorf("Stats count %d round trips, the client saw %d", st.RedisRoundTrips, hook.trips.Load())
			}
		})
	}
}

// TestSameCommandAsRedisRate: the command queued for a window is the one
// redis_rate's AllowN sends, script, key and arguments.
func TestSameCommandAsRedisRate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		lim  redis_rate.Limit
		n    int
	}{
		{"one per hour", redis_rate.Limit{Rate: 100, Burst: 100, Period: time.Hour}, 1},
		{"a lease", redis_rate.Limit{Rate: 1 << 20, Burst: 1 << 20, Period: 24 * time.Hour}, 32},
		{"per second", redis_rate.PerSecond(7), 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &scriptRecorder{}
			redis_rate.NewLimiter(rec).AllowN(context.Background(), "keygate:{b}:1h", tc.lim, tc.n)
			want := append([]any{"evalsha", rec.sha, len(rec.keys)}, stringsToAny(rec.keys)...)
			want = append(want, rec.args...)
			a := newGCRAArgs(tc.lim)
			got := gcraCmd("keygate:{b}:1h", &a, tc.n).Args()
			if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
				t.Fatalf("queued %#v\nredis_rate sends %#v", got, want)
			}
		})
	}
}

func stringsToAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestSameAnswersAsRedisRate: spends through the Limiter and through
// redis_rate's own AllowN, taking turns on one bucket, count down one
// quota together, and agree on what is left.
func TestSameAnswersAsRedisRate(t *testing.T) {
	t.Parallel()
	w := Window{Limit: 10, Period: time.Hour}
	l := newRedisLimiter(t, Config{Plans: map[string][]Window{"p": {w}}, LeaseMax: 1})
	rr := redis_rate.NewLimiter(l.rdb)
	lim := redis_rate.Limit{Rate: w.Limit, Burst: w.Limit, Period: w.Period}
	for k := 1; k <= w.Limit+1; k++ {
		var allowed bool
		var remaining int
		if k%2 == 0 {
			r, err := rr.Allow(context.Background(), l.redisKey("b", w), lim)
			if err != nil {
				t.Fatal(err)
			}
			allowed, remaining = r.Allowed == 1, r.Remaining
		} else {
			r := bypassDenyCache(t, l, "b", "p")
			allowed, remaining = r.Allowed, r.Remaining
		}
		if k == 1 {
			remaining = firstRemaining(l, remaining, w.Limit-1)
		}
		want := max(w.Limit-k, 0)
		if allowed != (k <= w.Limit) || remaining != want {
			t.Fatalf("request %d (%s): allowed=%v remaining=%d, want allowed=%v remaining=%d",
				k, map[bool]string{true: "redis_rate", false: "Limiter"}[k%2 == 0], allowed, remaining, k <= w.Limit, want)
		}
	}
}

// TestScriptCacheEmptied: after Redis forgets its scripts (a restart, a
// failover, SCRIPT FLUSH), checks go on: the pipeline sends EVAL for
// what came back NOSCRIPT, in the same batch's second round trip.
func TestScriptCacheEmptied(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	w := Window{Limit: 5, Period: time.Hour}
	plans := map[string][]Window{"p": {w, {Limit: 3, Period: 24 * time.Hour}}}
	l := newRedisLimiter(t, Config{Plans: plans, RedisURL: srv.URL()})
	for k := 1; k <= 3; k++ {
		if k == 2 {
			if err := l.rdb.ScriptFlush(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		}
		r := mustAllow(t, l, "b", "p")
		if !r.Allowed || r.Remaining != firstRemaining(l, r.Remaining, 3-k) && r.Remaining != 3-k {
			t.Fatalf("request %d: %+v, want allowed with %d left", k, r, 3-k)
		}
	}
	if r := bypassDenyCache(t, l, "b", "p"); r.Allowed {
		t.Fatalf("request 4 of 3: %+v", r)
	}
	if st := l.Stats(); st.RedisErrors != 0 || !st.RedisUp {
		t.Fatalf("stats %+v, want no Redis errors", st)
	}
}

// TestStalledRedisHoldsNoCheck: while Redis holds its answers far past
// the timeout, every check still answers within about the timeout (here
// from the in-process limiter, mode local), and none waits for Redis.
func TestStalledRedisHoldsNoCheck(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	proxy := startStallProxy(t, srv.Addr())
	const timeout, stall = 100 * time.Millisecond, 3 * time.Second
	plans := map[string][]Window{"p": {{Limit: 1000, Period: time.Hour}, {Limit: 5000, Period: 24 * time.Hour}}}
	l := newRedisLimiter(t, Config{Plans: plans, RedisURL: proxy.URL(), Timeout: timeout, OnRedisError: ModeLocal})
	mustAllow(t, l, "warm", "p")
	holding := proxy.stallAfter(0, stall)
	var wg sync.WaitGroup
	var slowest atomic.Int64
	for g := range 16 {
		wg.Go(func() {
			start := time.Now()
			r, err := l.Allow(context.Background(), fmt.Sprintf("b%d", g), "p")
			d := time.Since(start)
			if int64(d) > slowest.Load() {
				slowest.Store(int64(d))
			}
			if err != nil || !r.Allowed {
				t.Errorf("check %d: %+v, %v; want allowed (by Redis or, mode local, in process)", g, r, err)
			}
		})
	}
	wg.Wait()
	select {
	case <-holding:
	default:
		t.Fatal("the stall never began: no check reached Redis")
	}
	// A check that waited for Redis would take the whole stall.
	if d := time.Duration(slowest.Load()); d >= stall/2 {
		t.Fatalf("the slowest check took %v through a %v stall, timeout %v", d, stall, timeout)
	}
	t.Logf("slowest check %v (timeout %v, stall %v)", time.Duration(slowest.Load()), timeout, stall)
}

// TestCloseWithChecksWaiting: Close answers the checks still queued and
// returns; checks after it get an answer at once, not a hang.
func TestCloseWithChecksWaiting(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	proxy := startStallProxy(t, srv.Addr())
	plans := map[string][]Window{"p": {{Limit: 1000, Period: time.Hour}}}
	l, err := New(Config{Plans: plans, RedisURL: proxy.URL(), OnRedisError: ModeClosed, Timeout: 5 * time.Second, KeyPrefix: randomPrefix()},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mustAllow(t, l, "warm", "p")
	holding := proxy.stallAfter(0, time.Second)
	errs := make(chan error, 8)
	for g := range cap(errs) {
		go func() {
			_, err := l.Allow(context.Background(), fmt.Sprintf("b%d", g), "p")
			errs <- err
		}()
	}
	<-holding
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for range cap(errs) {
		if err := <-errs; err != nil && !errors.Is(err, ErrUnavailable) {
			t.Errorf("a check during Close: %v, want an answer or ErrUnavailable", err)
		}
	}
	start := time.Now()
	if _, err := l.Allow(context.Background(), "late", "p"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a check after Close: %v, want ErrUnavailable (mode closed)", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a check after Close took %v", d)
	}
}

// TestClusterOneCheckManyNodes: a check whose windows live in buckets on
// different Cluster nodes (as a tenant-wide window will) is still one
// pipeline: go-redis sends one per node, side by side, and every answer
// comes back to its window.
func TestClusterOneCheckManyNodes(t *testing.T) {
	t.Parallel()
	c := testredis.StartCluster(t, 3)
	w := Window{Limit: 4, Period: time.Hour}
	l := newRedisLimiter(t, Config{Plans: map[string][]Window{"p": {w}}, RedisURL: c.URL()})
	cc := l.rdb.(*redis.ClusterClient)
	ctx := context.Background()
	// Buckets until three different nodes own them.
	var buckets []string
	nodes := map[string]bool{}
	for i := 0; len(nodes) < 3 && i < 1000; i++ {
		b := fmt.Sprintf("bucket-%d", i)
		n, err := cc.MasterForKey(ctx, "rate:"+l.redisKey(b, w))
		if err != nil {
			t.Fatal(err)
		}
		if addr := n.Options().Addr; !nodes[addr] {
			nodes[addr] = true
			buckets = append(buckets, b)
		}
	}
	if len(nodes) < 3 {
		t.Fatalf("found buckets on %d nodes, want 3", len(nodes))
	}
	args := newGCRAArgs(redis_rate.Limit{Rate: w.Limit, Burst: w.Limit, Period: w.Period})
	hook := &tripHook{}
	l.rdb.AddHook(hook)
	for k := 1; k <= w.Limit+1; k++ {
		o := l.pipe.newOp()
		for _, b := range buckets {
			o.cmds = append(o.cmds, gcraCmd(l.redisKey(b, w), &args, 1))
		}
		if err := l.pipe.do(ctx, o, time.Second); err != nil {
			t.Fatal(err)
		}
		for i, cmd := range o.cmds {
			r, err := gcraAnswer(cmd)
			if err != nil {
				t.Fatalf("request %d, bucket %s: %v", k, buckets[i], err)
			}
			if (r.Allowed == 1) != (k <= w.Limit) {
				t.Fatalf("request %d, bucket %s: %+v", k, buckets[i], r)
			}
		}
		l.pipe.release(o)
	}
	// One pipeline per check (two for the first: the script is loaded).
	if trips := hook.trips.Load(); trips > int64(w.Limit+2) {
		t.Fatalf("%d pipelines for %d checks of three nodes each", trips, w.Limit+1)
	}
	for _, b := range buckets {
		if n, err := cc.Exists(ctx, "rate:"+l.redisKey(b, w)).Result(); err != nil || n != 1 {
			t.Fatalf("bucket %s not spent on its node: %d, %v", b, n, err)
		}
	}
	t.Logf("%d buckets on %d nodes: %d pipelines for %d checks", len(buckets), len(nodes), hook.trips.Load(), w.Limit+1)
}
