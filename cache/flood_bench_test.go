package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// BenchmarkFloodMemory is the process's memory before, during and after a
// flood of KEYGATE_BENCH_FLOOD (default 100,000) distinct unknown keys
// from 16 goroutines, against a cache of the default size (max_keys
// 1,000,000, negative_max 100,000) holding 10,000 keys warm-loaded from
// PostgreSQL. With the default look-up budget most keys are answered from
// memory; with a budget so large that every key is looked up, every one
// is remembered too, and the negative set fills to its ceiling. The
// issue's figure is a million:
//
//	KEYGATE_BENCH_FLOOD=1000000 go test -run '^$' -bench FloodMemory -benchtime 1x -timeout 30m ./cache/
func BenchmarkFloodMemory(b *testing.B) {
	n := 100_000
	if v := os.Getenv("KEYGATE_BENCH_FLOOD"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name        string
		missLookups int64
	}{
		{"default_budget", 0},
		{"every_miss_looked_up", 1_000_000_000},
	} {
		b.Run(c.name, func(b *testing.B) {
			db := benchDB(b, "postgres")
			if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), seedRecords(10_000)); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				kc, err := New(Config{MaxKeys: 1_000_000, NegativeTTL: time.Minute, MissLookups: c.missLookups, PollInterval: time.Second,
					QueryTimeout: 5 * time.Second, WarmStart: true}, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { kc.Run(ctx); close(done) }()
				for deadline := time.Now().Add(30 * time.Second); !kc.Complete(); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatal("the cache did not load")
					}
				}
				runtime.GC()
				debug.FreeOSMemory()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				rssBefore := rss()
				resetPeakRSS()

				start := time.Now()
				if err := floodHashes(kc, n, 16); err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				peak := peakRSS()
				runtime.GC()
				runtime.ReadMemStats(&after)
				debug.FreeOSMemory()
				rssAfter := rss()

				st := kc.Stats()
				mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
				heap := (float64(after.HeapInuse) - float64(before.HeapInuse)) / (1 << 20)
				b.ReportMetric(mib(rssBefore), "MiB-rss-before")
				b.ReportMetric(mib(peak), "MiB-rss-peak")
				b.ReportMetric(mib(rssAfter), "MiB-rss-after")
				b.ReportMetric(heap, "MiB-heap-growth")
				b.ReportMetric(float64(kc.NegativeEntries()), "remembered")
				b.ReportMetric(float64(st.Misses), "queries")
				b.Logf("%d unknown keys in %v: %d queries, %d answered unknown over the budget, %d remembered (capacity %d, %d bytes each); "+
					"RSS %.1f MiB before, %.1f MiB peak, %.1f MiB after; heap in use %.1f → %.1f MiB, stacks %.1f → %.1f MiB, "+
					"runtime total (Sys) %.1f → %.1f MiB",
					n, took.Round(time.Millisecond), st.Misses, st.OverBudgetUnknown, kc.NegativeEntries(), kc.NegativeCapacity(), negSlotBytes,
					mib(rssBefore), mib(peak), mib(rssAfter), mib(before.HeapInuse), mib(after.HeapInuse),
					mib(before.StackInuse), mib(after.StackInuse), mib(before.Sys-before.HeapReleased), mib(after.Sys-after.HeapReleased))
				cancel()
				<-done
				kc.Close()
			}
		})
	}
}

// BenchmarkLookupFlood is a miss of a complete cache with the look-up
// budget spent: what each key of a flood costs once the budget is gone.
func BenchmarkLookupFlood(b *testing.B) {
	at := time.Now()
	db := benchDB(b, "sqlite")
	c, err := New(Config{MaxKeys: 100, NegativeTTL: time.Minute, MissLookups: 1, PollInterval: time.Hour, QueryTimeout: time.Hour,
		WarmStart: true, Now: func() time.Time { return at }}, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if err := c.load(context.Background()); err != nil {
		b.Fatal(err)
	}
	c.budget.take(at.UnixNano()) // the one look-up: spent
	var h keys.Hash
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		i++
		binary.LittleEndian.PutUint64(h[:], i)
		binary.LittleEndian.PutUint64(h[8:], i*0x9e3779b97f4a7c15)
		binary.LittleEndian.PutUint64(h[16:], i*0xbf58476d1ce4e5b9)
		if _, err := c.Lookup(context.Background(), h); !errors.Is(err, ErrNotFound) {
			b.Fatal(err)
		}
	}
	if c.Stats().OverBudgetUnknown != uint64(b.N) {
		b.Fatalf("%d of %d answered over the budget", c.Stats().OverBudgetUnknown, b.N)
	}
}

// floodHashes looks up n distinct unknown hashes (SHA-256 of a counter,
// made as they are sent, so the flood holds no list of them) from workers
// goroutines.
func floodHashes(c *Cache, n, workers int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [8]byte
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				binary.LittleEndian.PutUint64(buf[:], uint64(i))
				h := keys.Hash(sha256.Sum256(buf[:]))
				if _, err := c.Lookup(context.Background(), h); !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// resetPeakRSS starts the kernel's peak resident size (VmHWM) afresh.
func resetPeakRSS() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSS is the process's peak resident size since resetPeakRSS, in bytes.
func peakRSS() uint64 { return procStatus("VmHWM:") }

// procStatus reads one kB figure of /proc/self/status.
func procStatus(field string) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
