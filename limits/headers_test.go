package limits

import (
	"testing"
	"time"
)

func TestWindowName(t *testing.T) {
	t.Parallel()
	cases := []struct {
		period time.Duration
		want   string
	}{
		{time.Second, "1s"},
		{30 * time.Second, "30s"},
		{90 * time.Second, "90s"},
		{time.Minute, "1m"},
		{2 * time.Minute, "2m"},
		{time.Hour, "1h"},
		{24 * time.Hour, "24h"},
		{90 * time.Minute, "90m"},
	}
	for _, tc := range cases {
		if got := (Window{Limit: 1, Period: tc.period}).Name(); got != tc.want {
			t.Errorf("Name(%v) = %q, want %q", tc.period, got, tc.want)
		}
	}
}

func TestPolicyHeader(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		ws   []Window
		want string
	}{
		{"live", []Window{{Limit: 10000, Period: time.Hour}}, `"1h";q=10000;w=3600`},
		{"test", []Window{{Limit: 100, Period: time.Hour}, {Limit: 1000, Period: 24 * time.Hour}}, `"1h";q=100;w=3600, "24h";q=1000;w=86400`},
		{"tier", []Window{{Limit: 1000, Period: time.Minute}}, `"1m";q=1000;w=60`},
		{"seconds", []Window{{Limit: 5, Period: time.Second}, {Limit: 50, Period: 30 * time.Second}}, `"1s";q=5;w=1, "30s";q=50;w=30`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := PolicyHeader(tc.ws); got != tc.want {
				t.Errorf("PolicyHeader = %q\nwant            %q", got, tc.want)
			}
		})
	}
}

func TestStateHeader(t *testing.T) {
	t.Parallel()
	hour, day := Window{Limit: 100, Period: time.Hour}, Window{Limit: 1000, Period: 24 * time.Hour}
	cases := []struct {
		name string
		r    Result
		want string
	}{
		{"one", Result{Windows: []WindowState{{hour, 99, 36 * time.Second}}}, `"1h";r=99;t=36`},
		{"rounds up", Result{Windows: []WindowState{{hour, 9123, 1799*time.Second + time.Millisecond}}}, `"1h";r=9123;t=1800`},
		{"two", Result{Windows: []WindowState{{hour, 99, 36 * time.Second}, {day, 999, 86400 * time.Millisecond}}},
			`"1h";r=99;t=36, "24h";r=999;t=87`},
		{"negative clamps", Result{Windows: []WindowState{{hour, -3, -time.Second}}}, `"1h";r=0;t=0`},
		{"none", Result{}, ``},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := StateHeader(tc.r); got != tc.want {
				t.Errorf("StateHeader = %q\nwant           %q", got, tc.want)
			}
		})
	}
}

func TestCeilSeconds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		d    time.Duration
		want int64
	}{
		{-time.Second, 0},
		{0, 0},
		{time.Nanosecond, 1},
		{200 * time.Millisecond, 1}, // Retry-After is never 0 for a denial
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{36 * time.Second, 36},
	}
	for _, tc := range cases {
		if got := CeilSeconds(tc.d); got != tc.want {
			t.Errorf("CeilSeconds(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestHeadersFromLimiter renders the headers of real answers: the plan's
// policy, and the state after the second request (the first request of a
// fresh Redis bucket may read one low; see firstRemaining), then a denial.
func TestHeadersFromLimiter(t *testing.T) {
	t.Parallel()
	plans := map[string][]Window{
		"test": {{Limit: 100, Period: time.Hour}, {Limit: 1000, Period: 24 * time.Hour}},
		"one":  {{Limit: 2, Period: 10 * time.Second}},
	}
	backends(t, plans, func(t *testing.T, l *Limiter) {
		if got, want := l.PolicyOf("test"), `"1h";q=100;w=3600, "24h";q=1000;w=86400`; got != want {
			t.Errorf("PolicyOf(test) = %q, want %q", got, want)
		}
		mustAllow(t, l, "k", "test")
		r := mustAllow(t, l, "k", "test")
		if got, want := StateHeader(r), `"1h";r=98;t=72, "24h";r=998;t=173`; got != want {
			t.Errorf("RateLimit after 2 requests = %q, want %q", got, want)
		}
		mustAllow(t, l, "o", "one")
		mustAllow(t, l, "o", "one")
		r = mustAllow(t, l, "o", "one")
		if r.Allowed {
			t.Fatal("third request of 2 per 10s allowed")
		}
		if got, want := StateHeader(r), `"10s";r=0;t=10`; got != want {
			t.Errorf("RateLimit when denied = %q, want %q", got, want)
		}
		if got := CeilSeconds(r.RetryAfter); got != 5 {
			t.Errorf("Retry-After = %d (from %v), want 5", got, r.RetryAfter)
		}
		// Denied again at once (on Redis, by the deny cache): the same
		// Retry-After. (The deny cache's t is the retry time, 5, where
		// Redis says 10, the time until the window is full.)
		r = mustAllow(t, l, "o", "one")
		if r.Allowed {
			t.Fatal("allowed right after a denial")
		}
		if got := CeilSeconds(r.RetryAfter); got != 5 {
			t.Errorf("Retry-After again = %d (from %v), want 5", got, r.RetryAfter)
		}
	})
}
