package limits

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestLocalExact: the in-process GCRA on a fake clock, to the nanosecond.
func TestLocalExact(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	w := Window{Limit: 4, Period: time.Second}
	l, err := New(Config{Plans: map[string][]Window{"p": {w}}, Now: clock.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance   time.Duration
		allowed   bool
		remaining int
		retry     time.Duration
	}{
		{0, true, 3, 0},
		{0, true, 2, 0},
		{0, true, 1, 0},
		{0, true, 0, 0},
		{0, false, 0, 250 * time.Millisecond},
		{249 * time.Millisecond, false, 0, time.Millisecond},
		{time.Millisecond, true, 0, 0},
		{time.Second, true, 3, 0}, // full again after a whole period
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		r := mustAllow(t, l, "b", "p")
		if r.Allowed != s.allowed || r.Remaining != s.remaining || r.RetryAfter != s.retry {
			t.Fatalf("step %d: allowed=%v remaining=%d retry=%v; want %v %d %v", i, r.Allowed, r.Remaining, r.RetryAfter, s.allowed, s.remaining, s.retry)
		}
	}
}

// TestLocalSweep: buckets whose windows have refilled are forgotten, so
// memory is bounded by the buckets active within their window.
func TestLocalSweep(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l, err := New(Config{Plans: map[string][]Window{"p": {{Limit: 10, Period: time.Second}}}, Now: clock.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const n = localShards * sweepEvery * 3 / 2
	for i := range n {
		mustAllow(t, l, "a"+strconv.Itoa(i), "p")
	}
	clock.Advance(2 * time.Second)
	for i := range n {
		mustAllow(t, l, "b"+strconv.Itoa(i), "p")
	}
	if got := l.local.size(); got >= 2*n-n/4 {
		t.Fatalf("%d buckets held after %d new ones, refilled ones not swept", got, n)
	}
}

// TestLocalExactUnderConcurrency: many goroutines on one hot bucket, while
// others churn through short-lived buckets so that sweeps run meanwhile:
// exactly the tightest window's limit is allowed, in single- and
// multi-window plans (where later windows' denials refund earlier ones).
func TestLocalExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	plans := map[string][]Window{
		"single": {{Limit: 300, Period: time.Hour}},
		"multi":  {{Limit: 500, Period: time.Hour}, {Limit: 200, Period: 24 * time.Hour}},
		"churn":  {{Limit: 1_000_000, Period: time.Second}}, // full again 1µs after a request
	}
	for plan, want := range map[string]int64{"single": 300, "multi": 200} {
		t.Run(plan, func(t *testing.T) {
			t.Parallel()
			l := newLocalLimiter(t, plans)
			l.local.sweepEvery = 4 // sweeps all along, racing the hot bucket
			var allowed atomic.Int64
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for range 100 {
						if mustAllow(t, l, "hot", plan).Allowed {
							allowed.Add(1)
						}
					}
				}()
				go func() {
					defer wg.Done()
					for i := range 300 {
						mustAllow(t, l, "churn-"+strconv.Itoa(w)+"-"+strconv.Itoa(i), "churn")
					}
				}()
			}
			wg.Wait()
			if got := allowed.Load(); got != want {
				t.Fatalf("%d of 1600 allowed, want exactly %d", got, want)
			}
			// Denials spent nothing: in the multi-window plan the hour
			// window holds the 200 allowed requests and this one only, not
			// the 1,400 the day window denied.
			r := mustAllow(t, l, "hot", plan)
			if r.Allowed || r.Remaining != 0 {
				t.Fatalf("after the burst: %+v", r)
			}
			if plan == "multi" && (r.Window != plans["multi"][1] || r.Windows[0].Remaining != 500-201) {
				t.Fatalf("after the burst: denied by %v, hour window remaining %d; want the day window, %d", r.Window, r.Windows[0].Remaining, 500-201)
			}
		})
	}
}

// TestLocalPlanChange: a bucket whose plan changed starts over under the
// new plan, and a request that raced the change is not lost.
func TestLocalPlanChange(t *testing.T) {
	t.Parallel()
	plans := map[string][]Window{"a": {{Limit: 1, Period: time.Hour}}, "b": {{Limit: 2, Period: time.Hour}}}
	l := newLocalLimiter(t, plans)
	for i, step := range []struct {
		plan string
		want bool
	}{
		{"a", true}, {"a", false}, // plan a: one an hour
		{"b", true}, {"b", true}, {"b", false}, // plan b starts over: two an hour
	} {
		if got := mustAllow(t, l, "k", step.plan).Allowed; got != step.want {
			t.Fatalf("request %d (plan %s): allowed %v, want %v", i, step.plan, got, step.want)
		}
	}
}
