package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testpg"
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
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
			db := benchDB(b, kind)
			start := time.Now()
			if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), seedRecords(n)); err != nil {
				b.Fatal(err)
			}
			b.Logf("seeded %d keys in %v", n, time.Since(start))
			// The seed records are garbage now: give their memory back so
			// the resident size below is the cache's and the process's.
			runtime.GC()
			debug.FreeOSMemory()
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
				debug.FreeOSMemory()
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
	url := "sqlite:" + filepath.Join(b.TempDir(), "k.db")
	if kind == "postgres" {
		url = testpg.NewSchema(b, testpg.SharedURL())
	}
	return openURL(b, url)
}

// rss is the process's resident set size in bytes, from /proc.
func rss() uint64 { return procStatus("VmRSS:") }

// seedRecords makes n distinct active keys spread over 1,000 tenants.
func seedRecords(n int) []keys.Record {
	recs := make([]keys.Record, n)
	now := time.Now().UTC()
	for i := range recs {
		id := fmt.Sprintf("key_%020d", i)
		recs[i] = keys.Record{ID: id, Hash: keys.NewHasher(nil).Sum(id), Prefix: "sk_live_AbCdEfG", Last4: "wxyz",
			Tenant: "tenant-" + strconv.Itoa(i%1000), Name: "bench", Env: keys.EnvLive,
			Scopes: []string{"patients:read", "forms:write"}, Plan: "live", Lineage: id, CreatedAt: now}
	}
	return recs
}

// BenchmarkMissFlood is the database's side of the miss path: a flood of
// well-formed but unknown keys with a look-up budget so large that every
// lookup, each a new hash, costs a database query (and then a negative
// entry). It is the rate cache.miss_lookups_per_second must stay well
// below. Run with -cpu to vary concurrency:
//
//	go test -run '^$' -bench MissFlood -benchtime 5s ./cache/
func BenchmarkMissFlood(b *testing.B) {
	for _, kind := range []string{"sqlite", "postgres"} {
		b.Run(kind, func(b *testing.B) {
			db := benchDB(b, kind)
			if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), seedRecords(10_000)); err != nil {
				b.Fatal(err)
			}
			c, err := New(Config{MaxKeys: 1_000_000, NegativeTTL: time.Minute, MissLookups: 1_000_000_000, PollInterval: time.Hour, QueryTimeout: 5 * time.Second},
				db, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var n atomic.Uint64
			b.SetParallelism(16) // many callers per CPU, as a flood would be
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var h keys.Hash
					binary.LittleEndian.PutUint64(h[:], n.Add(1))
					h[8] = 0xfe // never a seeded key's hash
					if _, err := c.Lookup(context.Background(), h); !errors.Is(err, ErrNotFound) {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "misses/s")
		})
	}
}
