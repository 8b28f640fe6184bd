package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The usage figures at scale. Both benchmarks size themselves from the
// environment so that the default run takes seconds and the full figure
// is one variable away:
//
//	go test -run '^$' -bench 'BenchmarkUsageFlush' -benchtime 5x -timeout 30m ./store/
//	KEYGATE_BENCH_USAGE_KEYS=100000 go test -run '^$' -bench 'BenchmarkUsageQuery30Days' -benchtime 200x -timeout 60m ./store/

// benchEnvInt reads a positive integer from the environment, else def.
func benchEnvInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q is not a positive whole number", name, v)
	}
	return n
}

// usageBatch is one flush of n active keys in one hour, as a replica
// makes it: every key some allowed decisions, a few limited or denied.
func usageBatch(n int, hour time.Time) []UsageCount {
	batch := make([]UsageCount, n)
	for i := range batch {
		batch[i] = UsageCount{KeyID: fmt.Sprintf("key_%07d", i), Tenant: fmt.Sprintf("tenant_%d", i%100), Start: hour,
			Allowed: int64(1 + i%50), RateLimited: int64(i % 3), Denied: int64(i % 2)}
	}
	return batch
}

// BenchmarkUsageFlush writes one flush of KEYGATE_BENCH_USAGE_FLUSH_KEYS
// (default 100,000) active keys: "new hour" inserts every row (the
// first flush of an hour), "same hour" adds to rows that exist (every
// later flush of the hour, and other replicas' flushes). One op is one
// AddUsage, the whole batch.
func BenchmarkUsageFlush(b *testing.B) {
	n := benchEnvInt(b, "KEYGATE_BENCH_USAGE_FLUSH_KEYS", 100_000)
	opens := []struct {
		name string
		open func(b *testing.B) DB
	}{
		{"postgres", func(b *testing.B) DB {
			return openURL(b, newSchema(b, testPGURL()), Options{QueryTimeout: time.Minute})
		}},
		{"sqlite", func(b *testing.B) DB {
			return openURL(b, "sqlite:"+filepath.Join(b.TempDir(), "keygate.db"), Options{QueryTimeout: time.Minute})
		}},
	}
	for _, o := range opens {
		b.Run(o.name, func(b *testing.B) {
			db := o.open(b)
			h0 := UsageHour(time.Now()).Add(-1000 * time.Hour)
			for _, mode := range []string{"new hour", "same hour"} {
				b.Run(mode, func(b *testing.B) {
					i := 0
					for b.Loop() {
						hour := h0
						if mode == "new hour" {
							hour = h0.Add(time.Duration(i+1) * time.Hour)
						}
						b.StopTimer()
						batch := usageBatch(n, hour)
						b.StartTimer()
						if err := db.AddUsage(b.Context(), batch); err != nil {
							b.Fatal(err)
						}
						i++
					}
					b.ReportMetric(float64(n), "keys/op")
					b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(i), "ms/flush")
				})
			}
		})
	}
}

// BenchmarkUsageQuery30Days reads one key's (and one tenant's) last 30
// days from PostgreSQL holding 30 days of hourly rows for
// KEYGATE_BENCH_USAGE_KEYS (default 10,000) keys that were all active
// every hour: 720 rows a key, written hour by hour as the flushes write
// them, so one key's rows lie on 720 different pages. The rows are made
// by one INSERT … SELECT from generate_series, the indexes after them.
func BenchmarkUsageQuery30Days(b *testing.B) {
	keys := benchEnvInt(b, "KEYGATE_BENCH_USAGE_KEYS", 10_000)
	db := openURL(b, newSchema(b, testPGURL()), Options{QueryTimeout: time.Minute}).(*Postgres)
	ctx := context.Background()
	now := time.Now()
	h0 := UsageHour(now).Add(-719 * time.Hour)
	conn, err := db.Pool().Acquire(ctx) // one session, for its SET
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	// The indexes are built after the rows, not kept up while they go in:
	// 72 million rows into three B-trees in hour order takes well over a
	// quarter of an hour, a sorted build a few minutes. The heap is the
	// same either way (hour by hour); the indexes come out packed, where
	// months of flushes would leave them with some free space from splits.
	for _, q := range []string{
		`SET maintenance_work_mem = '512MB'`,
		`ALTER TABLE key_usage DROP CONSTRAINT key_usage_pkey`,
		`DROP INDEX key_usage_tenant_idx`,
		`DROP INDEX key_usage_hour_idx`,
		`INSERT INTO key_usage (key_id, hour, tenant, allowed, rate_limited, denied)
SELECT 'key_' || lpad(k::text, 7, '0'), $1::bigint + h * 3600, 'tenant_' || (k % 100), 1 + (k + h) % 50, (k + h) % 3, (k + h) % 2
FROM generate_series(0, 719) AS h CROSS JOIN LATERAL generate_series(0, $2::int - 1) AS k`,
		`ALTER TABLE key_usage ADD PRIMARY KEY (key_id, hour)`,
		`CREATE INDEX key_usage_tenant_idx ON key_usage (tenant, hour)`,
		`CREATE INDEX key_usage_hour_idx ON key_usage (hour)`,
		`ANALYZE key_usage`,
	} {
		var args []any
		if strings.Contains(q, "$2") {
			args = []any{h0.Unix(), keys}
		}
		if _, err := conn.Exec(ctx, q, args...); err != nil {
			b.Fatalf("%.40s…: %v", q, err)
		}
	}
	conn.Release()
	b.Logf("seeded %d keys × 720 hours = %d rows in %v", keys, keys*720, time.Since(start).Round(time.Millisecond))
	since := now.Add(-30 * 24 * time.Hour)
	for _, tc := range []struct {
		name   string
		filter func(r *rand.Rand) UsageFilter
		want   int
	}{
		{"key by hour", func(r *rand.Rand) UsageFilter {
			return UsageFilter{KeyID: fmt.Sprintf("key_%07d", r.IntN(keys)), Since: since, Until: now}
		}, 720},
		{"key by day", func(r *rand.Rand) UsageFilter {
			return UsageFilter{KeyID: fmt.Sprintf("key_%07d", r.IntN(keys)), Since: since, Until: now, Granularity: GranularityDay}
		}, 0},
		{"tenant by day", func(r *rand.Rand) UsageFilter {
			return UsageFilter{Tenant: fmt.Sprintf("tenant_%d", r.IntN(100)), Since: since, Until: now, Granularity: GranularityDay}
		}, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				cs, err := db.Usage(ctx, tc.filter(r))
				if err != nil {
					b.Fatal(err)
				}
				if tc.want > 0 && len(cs) != tc.want || len(cs) == 0 {
					b.Fatalf("%d buckets", len(cs))
				}
			}
		})
	}
}
