package limits

import (
	"log/slog"
	"strconv"
	"sync"
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
