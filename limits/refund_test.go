package limits

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// TestRefundAfterStall: Redis answers a plan's first window, then stalls
// past the timeout before answering the second. The check fails over, and
// the request the first window spent is given back: its quota is whole
// afterwards. (The second window's request was executed by Redis but never
// answered, so it stays spent: a limit can only come out stricter.)
func TestRefundAfterStall(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	proxy := startStallProxy(t, srv.Addr())
	first, second := Window{Limit: 3, Period: time.Hour}, Window{Limit: 100, Period: 24 * time.Hour}
	plans := map[string][]Window{"p": {first, second}, "first": {first}}
	const timeout = 200 * time.Millisecond
	l := newRedisLimiter(t, Config{Plans: plans, RedisURL: proxy.URL(), Timeout: timeout})
	// A connection and the scripts loaded: what follows is one check's replies.
	mustAllow(t, l, "warm", "p")

	proxy.stallAfter(1, 5*timeout)
	start := time.Now()
	r, err := l.Allow(context.Background(), "b", "p")
	if took := time.Since(start); took > 2*timeout {
		t.Errorf("the check took %v through a stall, want about the timeout (%v)", took, timeout)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Allow through a stall = %+v, %v; want ErrUnavailable (mode closed)", r, err)
	}

	// The refund lands: the first window's key, spent once and given back
	// at once, is gone (a full window has no key).
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer direct.Close()
	key := "rate:" + l.redisKey("b", first)
	ctx := context.Background()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n, err := direct.Exists(ctx, key).Result()
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first window's request was not given back: EXISTS %s = %d, %v", key, n, err)
		}
	}
	// And the window allows its whole limit: another replica, straight to Redis.
	other, err := New(Config{Plans: plans, RedisURL: srv.URL(), KeyPrefix: l.cfg.KeyPrefix, OnRedisError: ModeClosed, Timeout: 2 * time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	allowed := 0
	for range first.Limit + 1 {
		if mustAllow(t, other, "b", "first").Allowed {
			allowed++
		}
	}
	if allowed != first.Limit {
		t.Fatalf("after the stall the first window allows %d, want its whole limit %d", allowed, first.Limit)
	}
}

// TestRefundWhenTheCallerGivesUp: the caller's context ends while Redis
// holds the answer; when it comes, what Redis spent for the check (which
// no longer counts it) is given back, and no error is blamed on Redis.
func TestRefundWhenTheCallerGivesUp(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	proxy := startStallProxy(t, srv.Addr())
	w := Window{Limit: 3, Period: time.Hour}
	plans := map[string][]Window{"p": {w, {Limit: 5, Period: 24 * time.Hour}}}
	l := newRedisLimiter(t, Config{Plans: plans, RedisURL: proxy.URL()})
	mustAllow(t, l, "warm", "p")

	holding := proxy.stallAfter(0, 300*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.Allow(ctx, "b", "p")
		errc <- err
	}()
	<-holding // both windows spent in Redis, the answer held
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Allow with its context canceled: %v, want context.Canceled", err)
	}
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer direct.Close()
	for _, win := range plans["p"] {
		key := "rate:" + l.redisKey("b", win)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			n, err := direct.Exists(context.Background(), key).Result()
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("window %s: the abandoned check's request was not given back: EXISTS %s = %d, %v", win.Name(), key, n, err)
			}
		}
	}
	if st := l.Stats(); !st.RedisUp || st.RedisErrors != 0 {
		t.Fatalf("stats %+v: a caller giving up is not a Redis failure", st)
	}
}
