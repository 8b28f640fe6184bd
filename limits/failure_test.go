package limits

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"

	"github.com/keygate/keygate/internal/testredis"
)

// TestRedisFailure kills a private Redis mid-traffic in each mode, checks
// that every call stays fast and answers as the mode says, then restarts
// Redis and checks that Run brings the limiter back to it.
func TestRedisFailure(t *testing.T) {
	t.Parallel()
	const callBound = 500 * time.Millisecond
	small := Window{Limit: 5, Period: time.Hour}
	plans := map[string][]Window{"big": {{Limit: 1_000_000, Period: time.Hour}}, "small": {small}}
	for _, mode := range []Mode{ModeLocal, ModeOpen, ModeClosed} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			srv := testredis.Start(t)
			logs := &syncbuf.Buffer{}
			l, err := New(Config{Plans: plans, RedisURL: srv.URL(), OnRedisError: mode, ProbeInterval: 100 * time.Millisecond},
				slog.New(slog.NewTextHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx, cancel := context.WithCancel(context.Background())
			runDone := make(chan error)
			go func() { runDone <- l.Run(ctx) }()
			defer func() { cancel(); <-runDone }()

			// Traffic flows through the whole test.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var slowest atomic.Int64
			var calls atomic.Int64
			for range 4 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						start := time.Now()
						r, err := l.Allow(context.Background(), "flow", "big")
						d := time.Since(start)
						calls.Add(1)
						if int64(d) > slowest.Load() {
							slowest.Store(int64(d))
						}
						if d > callBound {
							t.Errorf("a call took %v, want < %v", d, callBound)
						}
						switch {
						case err == nil && r.Allowed:
						case mode == ModeClosed && errors.Is(err, ErrUnavailable):
						default:
							t.Errorf("mode %s: Allow = %+v, %v", mode, r, err)
						}
						time.Sleep(time.Millisecond)
					}
				})
			}
			defer func() { close(stop); wg.Wait() }()

			time.Sleep(200 * time.Millisecond)
			if st := l.Stats(); !st.RedisUp || st.RedisCalls == 0 {
				t.Fatalf("before the kill: %+v, want Redis up and used", st)
			}
			srv.Kill()
			time.Sleep(300 * time.Millisecond)
			if st := l.Stats(); st.RedisUp || st.RedisErrors == 0 {
				t.Fatalf("after the kill: %+v, want Redis down with errors counted", st)
			}
			if !strings.Contains(logs.String(), "redis unreachable") {
				t.Errorf("no log line for Redis going down:\n%s", logs)
			}

			// Answers follow the mode.
			for k := 1; k <= small.Limit+1; k++ {
				start := time.Now()
				r, err := l.Allow(context.Background(), "enforce", "small")
				if d := time.Since(start); d > callBound {
					t.Errorf("request %d took %v while Redis is down", k, d)
				}
				switch mode {
				case ModeLocal: // the in-process GCRA enforces the plan
					if err != nil || r.Unknown || r.Allowed != (k <= small.Limit) {
						t.Fatalf("request %d: %+v, %v; want allowed=%v by the local limiter", k, r, err, k <= small.Limit)
					}
					if k > small.Limit && !within(r.RetryAfter, 11*time.Minute, 12*time.Minute) {
						t.Fatalf("local denial RetryAfter = %v, want ≈ 12m", r.RetryAfter)
					}
				case ModeOpen:
					if err != nil || !r.Allowed || !r.Unknown {
						t.Fatalf("request %d: %+v, %v; want allowed with Unknown", k, r, err)
					}
				case ModeClosed:
					if !errors.Is(err, ErrUnavailable) {
						t.Fatalf("request %d: %+v, %v; want ErrUnavailable", k, r, err)
					}
				}
			}

			// Recovery: Run's probe finds the restarted Redis.
			srv.Restart()
			deadline := time.Now().Add(5 * time.Second)
			for !l.Stats().RedisUp {
				if time.Now().After(deadline) {
					t.Fatalf("Redis not back within 5s of its restart: %+v", l.Stats())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !strings.Contains(logs.String(), "redis reachable again") {
				t.Errorf("no log line for Redis coming back:\n%s", logs)
			}
			before := l.Stats().RedisCalls
			// The restarted Redis is empty: the bucket starts afresh there.
			r, err := l.Allow(context.Background(), "enforce", "small")
			if err != nil || !r.Allowed || r.Unknown || r.Remaining != small.Limit-1 && r.Remaining != small.Limit-2 {
				t.Fatalf("after recovery: %+v, %v; want allowed by Redis's fresh bucket", r, err)
			}
			if l.Stats().RedisCalls == before {
				t.Fatal("after recovery the request did not go to Redis")
			}
			time.Sleep(100 * time.Millisecond)
			t.Logf("mode %s: %d calls, slowest %v, stats %+v", mode, calls.Load(), time.Duration(slowest.Load()), l.Stats())
		})
	}
}

// TestRedisDownAtStart: a Redis that does not answer when the limiter
// starts is reported at once (log line, RedisUp false), before any check.
func TestRedisDownAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "redis://" + l.Addr().String() + "/0"
	l.Close()
	var logs syncbuf.Buffer
	lim, err := New(Config{Plans: map[string][]Window{"p": {{Limit: 10, Period: time.Minute}}}, RedisURL: dead},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- lim.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for lim.Stats().RedisUp || !strings.Contains(logs.String(), "redis unreachable") {
		if time.Now().After(deadline) {
			t.Fatalf("no word of a dead Redis: up %v, log %q", lim.Stats().RedisUp, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestStaleFailureKeepsRedisUp: a call that began during an outage and
// fails after the probe found Redis again (a dial started before the
// restart) is counted, but does not send the recovered limiter back to
// its fallback; a call that began after the recovery and fails does.
func TestStaleFailureKeepsRedisUp(t *testing.T) {
	clock := time.Unix(1_700_000_000, 0)
	var logs syncbuf.Buffer
	l, err := New(Config{Plans: map[string][]Window{"p": {{Limit: 10, Period: time.Minute}}},
		RedisURL: "redis://127.0.0.1:1/0", Now: func() time.Time { return clock }},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	outage := errors.New("dial tcp: connection refused")
	tests := []struct {
		name    string
		began   time.Duration // relative to the recovery
		wantUp  bool
		wantErr uint64
	}{
		{"began during the outage", -time.Second, true, 1},
		{"began as the probe answered", 0, false, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l.markUp(clock)
			l.markDown(outage, clock.Add(tc.began))
			st := l.Stats()
			if st.RedisUp != tc.wantUp || st.RedisErrors != tc.wantErr {
				t.Fatalf("stats %+v, want up %v with %d errors", st, tc.wantUp, tc.wantErr)
			}
		})
	}
}
