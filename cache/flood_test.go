package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// unknownHashes are the hashes of n well-formed keys nobody has (valid
// prefix, length and checksum), as a key-guessing client sends them.
func unknownHashes(t testing.TB, n int) []keys.Hash {
	t.Helper()
	hs, err := guesses(n)
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// guesses is unknownHashes for goroutines other than the test's.
func guesses(n int) ([]keys.Hash, error) {
	hs := make([]keys.Hash, n)
	for i := range hs {
		k, err := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
		if err != nil {
			return nil, err
		}
		hs[i] = hashOf(k)
	}
	return hs, nil
}

// flood looks every hash up from workers goroutines and returns how the
// lookups ended: unknown, unavailable (of which over budget), other.
func flood(c *Cache, hs []keys.Hash, workers int) (unknown, unavailable, overBudget, other int64) {
	var u, a, o, x atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(hs)); i = next.Add(1) - 1 {
				_, err := c.Lookup(context.Background(), hs[i])
				switch {
				case errors.Is(err, ErrNotFound):
					u.Add(1)
				case errors.Is(err, ErrOverBudget):
					o.Add(1)
					a.Add(1)
				case errors.Is(err, ErrUnavailable):
					a.Add(1)
				default:
					x.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return u.Load(), a.Load(), o.Load(), x.Load()
}

// openPG opens and migrates a key database on a private PostgreSQL. Its
// timeouts are long enough for a loaded machine: a stopped server refuses
// connections at once.
func openPG(t *testing.T, url string) store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), url, store.Options{QueryTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestFloodKeepsEveryKey is the attack: a small max_keys, N keys
// warm-loaded, then fifty times N well-formed unknown keys. Every one of
// the N keys is still a hit afterwards, without a query — and still
// answered once the key database is stopped. It is run with the default
// look-up budget and with one so large that every unknown key is looked up
// and remembered, the case that pushed real keys out when unknown keys
// shared their cache.
func TestFloodKeepsEveryKey(t *testing.T) {
	const n, maxKeys = 200, 256
	for _, c := range []struct {
		name        string
		missLookups int64
	}{
		{"default budget", 0},
		{"every miss looked up", 1_000_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			pg := testpg.Start(t)
			db := openPG(t, pg.URL())
			recs := seedRecords(n)
			if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			src := &counting{DB: db}
			kc := newCache(t, src, Config{MaxKeys: maxKeys, NegativeMax: 1000, MissLookups: c.missLookups, WarmStart: true})
			run(t, kc)
			if !kc.Complete() {
				t.Fatal("a cache that loaded every active key is not complete")
			}

			unknown, unavailable, _, other := flood(kc, unknownHashes(t, 50*n), 8)
			if unknown != 50*n || unavailable+other != 0 {
				t.Fatalf("flood of %d unknown keys: %d unknown, %d unavailable, %d other", 50*n, unknown, unavailable, other)
			}
			st := kc.Stats()
			t.Logf("flood of %d unknown keys: %d database look-ups, %d answered unknown over the budget; %d remembered (capacity %d)",
				50*n, st.Misses, st.OverBudgetUnknown, kc.NegativeEntries(), kc.NegativeCapacity())
			if got := kc.NegativeEntries(); int64(got) > kc.NegativeCapacity() {
				t.Fatalf("%d unknown keys remembered, over the capacity %d", got, kc.NegativeCapacity())
			}
			if st.Evictions != 0 || !kc.Complete() {
				t.Fatalf("the flood evicted %d keys (complete %v)", st.Evictions, kc.Complete())
			}

			queries := src.byHash.Load()
			for i := range recs {
				if _, found, known := kc.Peek(recs[i].Hash); !found || !known {
					t.Fatalf("key %d of %d is no longer cached after the flood", i, n)
				}
			}
			if got := src.byHash.Load(); got != queries {
				t.Fatalf("checking the cached keys cost %d queries", got-queries)
			}

			pg.Stop()
			eventually(t, func() bool { return !kc.DBUp() })
			for i := range recs {
				if r, err := kc.Lookup(context.Background(), recs[i].Hash); err != nil || r.ID != recs[i].ID {
					t.Fatalf("key %d with the database stopped: %v", i, err)
				}
			}
			if kc.Stats().StaleServes < n {
				t.Errorf("%d stale serves, want at least %d", kc.Stats().StaleServes, n)
			}
			// Unknown keys now: the cache cannot vouch for being current,
			// so never "unknown", always unavailable.
			unknown, unavailable, _, other = flood(kc, unknownHashes(t, 2000), 8)
			if unknown != 0 || other != 0 || unavailable != 2000 {
				t.Fatalf("unknown keys with the database stopped: %d unknown, %d unavailable, %d other", unknown, unavailable, other)
			}
		})
	}
}

// TestFloodQueriesWithinBudget counts the key database's look-ups during
// a flood on PostgreSQL: on a stopped clock exactly the burst, then one
// per 1/MissLookups of clock time; the misses over it are answered unknown
// when the cache is complete and unavailable when it is not.
func TestFloodQueriesWithinBudget(t *testing.T) {
	db := openURL(t, testpg.NewSchema(t, testpg.SharedURL()))
	if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), seedRecords(100)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		warm      bool
		overError error
	}{
		{"complete cache", true, ErrNotFound},
		{"partial cache", false, ErrOverBudget},
	} {
		t.Run(c.name, func(t *testing.T) {
			var clock atomic.Int64
			clock.Store(time.Now().UnixNano())
			now := func() time.Time { return time.Unix(0, clock.Load()) }
			src := &counting{DB: db}
			kc, logs := newCacheLogged(t, src, Config{MissLookups: 100, WarmStart: c.warm, Now: now})
			run(t, kc)
			if kc.Complete() != c.warm {
				t.Fatalf("complete %v, want %v", kc.Complete(), c.warm)
			}
			unknown, unavailable, over, other := flood(kc, unknownHashes(t, 5000), 8)
			if got := src.byHash.Load(); got != 100 {
				t.Fatalf("%d queries for a flood of 5,000 on a stopped clock, want the burst of 100", got)
			}
			wantUnknown, wantOver := int64(5000), int64(0)
			if c.overError == ErrOverBudget {
				wantUnknown, wantOver = 100, 4900
			}
			if unknown != wantUnknown || over != wantOver || unavailable != wantOver || other != 0 {
				t.Fatalf("%d unknown, %d unavailable (%d over budget), %d other; want %d unknown, %d over budget",
					unknown, unavailable, over, other, wantUnknown, wantOver)
			}
			st := kc.Stats()
			if st.Misses != 100 || st.OverBudgetUnknown+st.OverBudgetUnavailable != 4900 {
				t.Fatalf("stats: %d misses, %d+%d over budget", st.Misses, st.OverBudgetUnknown, st.OverBudgetUnavailable)
			}
			// The refresh loop says so, once for all of them.
			eventually(t, func() bool { return strings.Contains(logs.String(), `"answered_unknown":`) })
			if n := strings.Count(logs.String(), "over the database look-up budget"); n != 1 {
				t.Fatalf("the spent budget logged %d times, want once:\n%s", n, logs)
			}
			clock.Add(int64(250 * time.Millisecond))
			flood(kc, unknownHashes(t, 1000), 8)
			if got := src.byHash.Load(); got != 125 {
				t.Fatalf("%d queries after 250 ms more at 100/s, want 125", got)
			}
		})
	}
}

// TestFloodQueriesWithinBudgetRealClock floods from many goroutines on the
// real clock: the queries counted never exceed the budget over the flood's
// span plus one second's burst.
func TestFloodQueriesWithinBudgetRealClock(t *testing.T) {
	db := openURL(t, testpg.NewSchema(t, testpg.SharedURL()))
	src := &counting{DB: db}
	const perSecond = 200
	kc := newCache(t, src, Config{MissLookups: perSecond, WarmStart: true})
	run(t, kc)
	hs := unknownHashes(t, 20_000)
	start := time.Now()
	unknown, _, _, _ := flood(kc, hs, 16)
	took := time.Since(start)
	queries := src.byHash.Load()
	limit := perSecond + int64(took.Seconds()*perSecond) + 1
	t.Logf("%d unknown keys in %v: %d queries (budget %d/s: at most %d)", len(hs), took, queries, perSecond, limit)
	if unknown != int64(len(hs)) {
		t.Fatalf("%d of %d answered unknown", unknown, len(hs))
	}
	if queries > limit || queries < perSecond {
		t.Fatalf("%d queries, want between the burst %d and %d", queries, perSecond, limit)
	}
}

// TestNewKeyFromAnotherReplicaDuringFlood: while a flood keeps the look-up
// budget spent, a key created through another connection to the same
// PostgreSQL (another replica, the CLI) reaches the cache through
// LISTEN/NOTIFY — the poll interval is an hour — and is served from
// memory, not refused as unknown.
func TestNewKeyFromAnotherReplicaDuringFlood(t *testing.T) {
	url := testpg.NewSchema(t, testpg.SharedURL())
	db, other := openURL(t, url), openURL(t, url)
	src := &counting{DB: db}
	kc := newCache(t, src, Config{MissLookups: 50, WarmStart: true, PollInterval: time.Hour})
	run(t, kc)
	ctx, cancel := context.WithCancel(context.Background())
	var notices atomic.Int64
	listening := make(chan struct{})
	go func() {
		db.(store.Notifier).Listen(ctx, func() { notices.Add(1); kc.Notify() })
		close(listening)
	}()
	t.Cleanup(func() { cancel(); <-listening })
	eventually(t, func() bool { return notices.Load() > 0 }) // LISTEN is in place

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var denied atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				hs, err := guesses(100)
				if err != nil {
					t.Error(err)
					return
				}
				for _, h := range hs {
					if _, err := kc.Lookup(context.Background(), h); !errors.Is(err, ErrNotFound) {
						t.Errorf("unknown key during the flood: %v", err)
						return
					}
				}
				denied.Add(100)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	eventually(t, func() bool { return kc.Stats().OverBudgetUnknown > 0 })

	key, rec := insertKey(t, other, "acme")
	created := time.Now()
	spent := kc.Stats().OverBudgetUnknown
	eventually(t, func() bool { _, _, known := kc.Peek(hashOf(key)); return known })
	latency := time.Since(created)
	got, err := kc.Lookup(context.Background(), hashOf(key))
	if err != nil || got.ID != rec.ID {
		t.Fatalf("the new key: %v %v", got.ID, err)
	}
	// The flood spent the budget before the key was created and still
	// does after it arrived. (Not necessarily in between: a notice can
	// beat a busy machine's scheduling of the flooding goroutines.)
	eventually(t, func() bool { return kc.Stats().OverBudgetUnknown > spent })
	t.Logf("a key created on another connection was in the cache %v later, during a flood (%d unknown keys answered, %d database look-ups)",
		latency, denied.Load(), src.byHash.Load())
}

// TestStaleNegativeFillIsDropped: a miss whose query began before the key
// was created must not remember the key as unknown.
func TestStaleNegativeFillIsDropped(t *testing.T) {
	db := openDB(t)
	c := newCache(t, db, Config{})
	h := unknownHashes(t, 1)[0]
	gen := c.gen.Load()
	id, _ := keys.NewID("key")
	c.apply(store.Changes{Keys: []keys.Record{{ID: id, Hash: h, Tenant: "acme", Env: keys.EnvLive, Lineage: id}}, Version: 1})
	c.store(gen, h, nil) // the "no such key" that raced the creation
	if _, found, known := c.Peek(h); !found || !known {
		t.Fatalf("found %v known %v: the stale miss was remembered over the new key", found, known)
	}
}
