package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// randomPrefix is a key prefix of the test's own on the shared Redis.
func randomPrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "kgtest:" + hex.EncodeToString(b[:]) + ":"
}

// newRedisLimiter builds a Limiter on the shared Redis (unless cfg names
// another) under a fresh key prefix (unless cfg sets one). The mode is
// closed and the timeout generous unless cfg says otherwise, so a Redis
// error shows up as ErrUnavailable rather than as a silent local answer.
// An unreachable Redis fails the test. t.Cleanup deletes the prefix's keys.
func newRedisLimiter(t testing.TB, cfg Config) *Limiter {
	t.Helper()
	if testing.Short() {
		t.Skip("needs Redis: -short leaves out the tests that need services or tools; make test runs them")
	}
	if cfg.RedisURL == "" {
		cfg.RedisURL = testredis.SharedURL()
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = randomPrefix()
	}
	if cfg.OnRedisError == "" {
		cfg.OnRedisError = ModeClosed
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	l, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := l.rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable; the tests need it (KEYGATE_TEST_REDIS_URL, default %s): %v",
			cfg.RedisURL, testredis.DefaultSharedURL, err)
	}
	prefix := "rate:" + cfg.KeyPrefix // redis_rate prefixes its keys with "rate:"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var keys []string
		if c, ok := l.rdb.(*redis.ClusterClient); ok {
			c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
				ks, _ := n.Keys(ctx, prefix+"*").Result()
				for _, k := range ks {
					n.Del(ctx, k)
				}
				return nil
			})
		} else {
			iter := l.rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
			for iter.Next(ctx) {
				keys = append(keys, iter.Val())
			}
			if len(keys) > 0 {
				l.rdb.Del(ctx, keys...)
			}
		}
		l.Close()
	})
	return l
}

// newLocalLimiter builds an in-process Limiter.
func newLocalLimiter(t testing.TB, plans map[string][]Window) *Limiter {
	t.Helper()
	l, err := New(Config{Plans: plans}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// mustAllow calls Allow and fails the test on an error.
func mustAllow(t testing.TB, l *Limiter, bucket, plan string) Result {
	t.Helper()
	r, err := l.Allow(context.Background(), bucket, plan)
	if err != nil {
		t.Fatalf("Allow(%q, %q): %v", bucket, plan, err)
	}
	return r
}

// countHook counts the commands a client sends to Redis.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// within reports whether got is in [lo, hi].
func within(got, lo, hi time.Duration) bool { return got >= lo && got <= hi }
