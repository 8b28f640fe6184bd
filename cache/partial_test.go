package cache

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// TestPartial: a cache that cannot hold every active key says so — in the
// log, in Stats and by answering misses over the budget as unavailable —
// and keeps the most used keys.
func TestPartial(t *testing.T) {
	for _, c := range []struct {
		name     string
		keys     int
		complete bool
	}{
		{"fewer keys than max_keys", 30, true},
		{"exactly max_keys", 50, true},
		{"more keys than max_keys", 80, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			db := openDB(t)
			if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), seedRecords(c.keys)); err != nil {
				t.Fatal(err)
			}
			// A stopped clock: the budget's one look-up never comes back.
			at := time.Now()
			kc, logs := newCacheLogged(t, db, Config{MaxKeys: 50, MissLookups: 1, WarmStart: true, Now: func() time.Time { return at }})
			run(t, kc)
			if kc.Complete() != c.complete || kc.Stats().Complete != c.complete {
				t.Fatalf("complete %v, want %v", kc.Complete(), c.complete)
			}
			if partial := strings.Contains(logs.String(), "key cache is partial"); partial == c.complete {
				t.Fatalf("partial logged %v, want %v:\n%s", partial, !c.complete, logs)
			}
			want := ErrNotFound
			if !c.complete {
				want = ErrOverBudget
			}
			hs := unknownHashes(t, 3)
			kc.Lookup(context.Background(), hs[0]) // the budget's one look-up
			for _, h := range hs[1:] {
				if _, err := kc.Lookup(context.Background(), h); !errors.Is(err, want) {
					t.Fatalf("miss over the budget: %v, want %v", err, want)
				}
			}
		})
	}
}

// TestOutgrowKeepsMostUsed: a complete cache that the change feed fills
// past max_keys becomes partial, logs it once, and TinyLFU keeps the keys
// in use rather than the new ones nobody has asked for.
func TestOutgrowKeepsMostUsed(t *testing.T) {
	db := openDB(t)
	all := seedRecords(100)
	recs, more := all[:50], all[50:]
	if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	kc, logs := newCacheLogged(t, db, Config{MaxKeys: 50, WarmStart: true})
	run(t, kc)
	if !kc.Complete() {
		t.Fatal("not complete before the key set grew")
	}
	hot := recs[:10]
	for range 200 {
		for i := range hot {
			if _, found, _ := kc.Peek(hot[i].Hash); !found {
				t.Fatal("a warm key is not cached")
			}
		}
	}
	kc.rc.Wait()
	var last int64
	for i := range more {
		r, err := db.InsertKey(context.Background(), more[i])
		if err != nil {
			t.Fatal(err)
		}
		last = r.Version
	}
	// The feed has applied (and ristretto stored) every new key.
	eventually(t, func() bool { return kc.Stats().Version >= last })
	if kc.Complete() {
		t.Fatal("still complete with 100 active keys in a cache of 50")
	}
	if kc.Stats().Evictions == 0 {
		t.Fatal("partial without an eviction counted")
	}
	held := 0
	for i := range all {
		if _, found, _ := kc.Peek(all[i].Hash); found {
			held++
		}
	}
	if held != 50 {
		t.Fatalf("%d of %d keys cached with max_keys 50", held, len(all))
	}
	// The hot keys stay, if ristretto saw them used (see raceDetector).
	for i := range hot {
		if _, found, _ := kc.Peek(hot[i].Hash); !found && !raceDetector {
			t.Fatalf("hot key %d was pushed out by keys nobody used", i)
		}
	}
	if n := strings.Count(logs.String(), "key cache is partial"); n != 1 {
		t.Fatalf("partial logged %d times, want once", n)
	}
}

// TestCloseIsNotEviction: closing a cache that holds every active key
// (ristretto's Close hands each record to OnEvict) neither logs it as
// partial nor counts an eviction, as it did at every shutdown.
func TestCloseIsNotEviction(t *testing.T) {
	db := openDB(t)
	if err := db.(store.BulkInserter).BulkInsertKeys(context.Background(), seedRecords(30)); err != nil {
		t.Fatal(err)
	}
	kc, logs := newCacheLogged(t, db, Config{MaxKeys: 50, WarmStart: true})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { kc.Run(ctx); close(done) }()
	for deadline := time.Now().Add(5 * time.Second); !kc.Ready(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("cache never became ready")
		}
	}
	if !kc.Complete() {
		t.Fatalf("30 keys in a cache of 50 not complete: %+v", kc.Stats())
	}
	cancel()
	<-done
	kc.Close()
	if st := kc.Stats(); st.Evictions != 0 || strings.Contains(logs.String(), "partial") {
		t.Fatalf("after Close: %d evictions, log:\n%s", st.Evictions, logs)
	}
}
