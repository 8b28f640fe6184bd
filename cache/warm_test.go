package cache

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// BenchmarkWarmStart measures loading N active keys (KEYGATE_BENCH_KEYS,
// default 100,000; the figure is 1,000,000) from SQLite and
// PostgreSQL into the cache: the time to ready and the heap the cache
// holds. Run it with
//
//	KEYGATE_BENCH_KEYS=1000000 go test -run '^$' -bench WarmStart -benchtime 1x -timeout 30m ./cache/
func BenchmarkWarmStart(b *testing.B) {
	n := 100_000
	if v := os.Getenv("KEYGATE_BENCH_KEYS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	recs := make([]keys.Record, n)
	now := time.Now().UTC()
	for i := range recs {
		var h keys.Hash
		copy(h[:], fmt.Sprintf("%032d", i))
		h = keys.NewHasher(nil).Sum(string(h[:]))
		id := fmt.Sprintf("key_%020d", i)
		recs[i] = keys.Record{ID: id, Hash: h, Prefix: "sk_live_AbCdEfG", Last4: "wxyz", Tenant: "tenant-" + strconv.Itoa(i%1000),
			Name: "bench", Env: keys.EnvLive, Scopes: []string{"patients:read", "forms:write"}, Plan: "live", Lineage: id, CreatedAt: now}
	}
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
			db := benchDB(b, kind)
			start := time.Now()
			if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), recs); err != nil {
				b.Fatal(err)
			}
			b.Logf("seeded %d keys in %v", n, time.Since(start))
			for b.Loop() {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				c, err := New(Config{MaxKeys: int64(n), NegativeTTL: time.Minute, PollInterval: time.Hour, QueryTimeout: 30 * time.Second, WarmStart: true},
					db, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := c.load(context.Background()); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				heap := float64(after.HeapInuse-before.HeapInuse) / (1 << 20)
				b.ReportMetric(took.Seconds(), "s/warmstart")
				b.ReportMetric(heap, "MiB-heap")
				b.ReportMetric(float64(rss())/(1<<20), "MiB-rss")
				b.Logf("%s: warm start of %d keys took %v; cache heap %.0f MiB; process RSS %.0f MiB", kind, n, took, heap, float64(rss())/(1<<20))
				c.Close()
			}
		})
	}
}

func benchDB(b *testing.B, kind string) store.DB {
	ctx := context.Background()
	if kind == "sqlite" {
		db, err := store.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "k.db"), store.Options{QueryTimeout: 30 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		if err := db.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		return db
	}
	base := os.Getenv("KEYGATE_TEST_DATABASE_URL")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	schema := fmt.Sprintf("kg_bench_%d", time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		b.Fatalf("PostgreSQL at %s: %v", base, err)
	}
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		admin.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	db, err := store.Open(ctx, base+sep+"search_path="+schema, store.Options{QueryTimeout: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	return db
}

// rss is the process's resident set size in bytes, from /proc.
func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
