package limits

import (
	"context"
	"testing"
	"time"
)

var benchPlans = map[string][]Window{
	"single": {{Limit: 1 << 30, Period: time.Hour}},
	"multi":  {{Limit: 1 << 30, Period: time.Hour}, {Limit: 1 << 30, Period: 24 * time.Hour}},
	"tiny":   {{Limit: 1, Period: time.Hour}},
}

func BenchmarkAllowLocal(b *testing.B) {
	for _, plan := range []string{"single", "multi"} {
		b.Run(plan, func(b *testing.B) {
			l := newLocalLimiter(b, benchPlans)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r, err := l.Allow(ctx, "bench", plan); err != nil || !r.Allowed {
					b.Fatalf("Allow = %+v, %v", r, err)
				}
			}
		})
	}
}

// BenchmarkAllowLocalHotKey is many concurrent requests of one key, as
// under load from one busy client: the bucket must not become a lock
// everyone queues on.
func BenchmarkAllowLocalHotKey(b *testing.B) {
	for _, plan := range []string{"single", "multi"} {
		b.Run(plan, func(b *testing.B) {
			l := newLocalLimiter(b, benchPlans)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if r, err := l.Allow(ctx, "bench", plan); err != nil || !r.Allowed {
						b.Errorf("Allow = %+v, %v", r, err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkAllowRedis(b *testing.B) {
	for _, plan := range []string{"single", "multi"} {
		b.Run(plan, func(b *testing.B) {
			l := newRedisLimiter(b, Config{Plans: benchPlans})
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r, err := l.Allow(ctx, "bench", plan); err != nil || !r.Allowed {
					b.Fatalf("Allow = %+v, %v", r, err)
				}
			}
		})
	}
}

// BenchmarkAllowDeniedCached: an over-limit bucket answered by the deny
// cache, without Redis.
func BenchmarkAllowDeniedCached(b *testing.B) {
	l := newRedisLimiter(b, Config{Plans: benchPlans})
	ctx := context.Background()
	l.Allow(ctx, "bench", "tiny")
	if r, _ := l.Allow(ctx, "bench", "tiny"); r.Allowed {
		b.Fatal("second request of 1/h allowed")
	}
	l.deny.Wait()
	calls := l.Stats().RedisCalls
	b.ReportAllocs()
	for b.Loop() {
		if r, err := l.Allow(ctx, "bench", "tiny"); err != nil || r.Allowed {
			b.Fatalf("Allow = %+v, %v", r, err)
		}
	}
	if d := l.Stats().RedisCalls - calls; d != 0 {
		b.Fatalf("%d Redis calls while denied from the cache", d)
	}
}
