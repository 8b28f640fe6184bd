package limits

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
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

// BenchmarkAllowRedisManyKeys is many concurrent checks of 10,000 keys,
// each used now and then, as real traffic is: no lease helps, every check
// goes to Redis, and concurrent checks share pipelines. It reports the
// Redis server's CPU per check (INFO cpu; the shared server's other
// clients count too), this process's CPU per check, and round trips per
// check. KEYGATE_BENCH_PIPELINE_WINDOW (a duration) sets PipelineWindow.
func BenchmarkAllowRedisManyKeys(b *testing.B) {
	window, _ := time.ParseDuration(os.Getenv("KEYGATE_BENCH_PIPELINE_WINDOW"))
	for _, plan := range []string{"single", "multi"} {
		b.Run(plan, func(b *testing.B) {
			l := newRedisLimiter(b, Config{Plans: benchPlans, PipelineWindow: window})
			ctx := context.Background()
			var next atomic.Uint64
			cpu0, proc0 := redisCPU(b, l), processCPU()
			trips0 := l.Stats().RedisRoundTrips
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				var bucket [16]byte
				for pb.Next() {
					k := next.Add(7919) % 10_000
					name := strconv.AppendUint(append(bucket[:0], 'k'), k, 10)
					if r, err := l.Allow(ctx, string(name), plan); err != nil || !r.Allowed {
						b.Errorf("Allow = %+v, %v", r, err)
						return
					}
				}
			})
			b.ReportMetric(float64(processCPU()-proc0)/float64(time.Microsecond)/float64(b.N), "process-cpu-µs/op")
			b.ReportMetric(float64(redisCPU(b, l)-cpu0)/float64(time.Microsecond)/float64(b.N), "redis-cpu-µs/op")
			b.ReportMetric(float64(l.Stats().RedisRoundTrips-trips0)/float64(b.N), "trips/op")
		})
	}
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is the CPU time the limiter's Redis server has used.
func redisCPU(b *testing.B, l *Limiter) time.Duration {
	b.Helper()
	info, err := l.rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for line := range strings.Lines(info) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			s, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu: %s: %v", line, err)
			}
			total += time.Duration(s * float64(time.Second))
		}
	}
	return total
}
