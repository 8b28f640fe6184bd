package cache

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// counting wraps a real store and counts KeyByHash calls; it can also be
// told to fail, standing in for an unreachable database.
type counting struct {
	store.DB
	byHash atomic.Int64
	delay  time.Duration
	down   atomic.Bool
}

var errDown = errors.New("database down")

func (c *counting) KeyByHash(ctx context.Context, h keys.Hash) (keys.Record, error) {
	c.byHash.Add(1)
	if c.down.Load() {
		return keys.Record{}, errDown
	}
	time.Sleep(c.delay)
	return c.DB.KeyByHash(ctx, h)
}

func (c *counting) Changes(ctx context.Context, after int64, limit int) (store.Changes, error) {
	if c.down.Load() {
		return store.Changes{}, errDown
	}
	return c.DB.Changes(ctx, after, limit)
}

func openDB(t *testing.T) store.DB {
	return openURL(t, "sqlite:"+filepath.Join(t.TempDir(), "k.db"))
}

// openURL opens and migrates a key database, closed at cleanup.
func openURL(t testing.TB, url string) store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, url, store.Options{QueryTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

func insertKey(t *testing.T, db store.DB, tenant string) (string, keys.Record) {
	t.Helper()
	key, err := keys.Generate(keys.Format{Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := keys.NewID("key")
	rec, err := db.InsertKey(context.Background(), keys.Record{
		ID: id, Hash: keys.NewHasher(nil).Sum(key), Prefix: keys.DisplayPrefix(key), Last4: keys.Last4(key),
		Tenant: tenant, Env: keys.EnvTest, Scopes: []string{"a:read"}, Plan: "test", Lineage: id, CreatedAt: time.Now().UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return key, rec
}

func newCache(t *testing.T, src source, cfg Config) *Cache {
	t.Helper()
	c, _ := newCacheLogged(t, src, cfg)
	return c
}

// newCacheLogged is newCache with the cache's log kept for reading.
func newCacheLogged(t *testing.T, src source, cfg Config) (*Cache, *syncbuf.Buffer) {
	t.Helper()
	if cfg.MaxKeys == 0 {
		cfg.MaxKeys = 1000
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = time.Minute
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	if cfg.QueryTimeout == 0 {
		// Long enough that a loaded machine never makes the cache look
		// behind its change feed (see Cache.Complete).
		cfg.QueryTimeout = 5 * time.Second
	}
	logs := &syncbuf.Buffer{}
	c, err := New(cfg, src, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, logs
}

func run(t *testing.T, c *Cache) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(5 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("cache never became ready")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func hashOf(key string) keys.Hash { return keys.NewHasher(nil).Sum(key) }

func TestConcurrentMissesMakeOneQuery(t *testing.T) {
	db := openDB(t)
	key, rec := insertKey(t, db, "acme")
	src := &counting{DB: db, delay: 50 * time.Millisecond}
	c := newCache(t, src, Config{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := c.Lookup(context.Background(), hashOf(key))
			if err != nil || got.ID != rec.ID {
				t.Errorf("Lookup: %v %v", got.ID, err)
			}
		}()
	}
	wg.Wait()
	if n := src.byHash.Load(); n != 1 {
		t.Fatalf("50 concurrent misses made %d queries, want 1", n)
	}
	c.rc.Wait()
	if _, err := c.Lookup(context.Background(), hashOf(key)); err != nil || src.byHash.Load() != 1 {
		t.Fatalf("a hit went to the database (%d queries)", src.byHash.Load())
	}
}

func TestUnknownKeysAreRememberedBriefly(t *testing.T) {
	db := openDB(t)
	src := &counting{DB: db}
	c := newCache(t, src, Config{NegativeTTL: 200 * time.Millisecond})
	unknown, _ := keys.Generate(keys.Format{Prefix: "sk_test_", Checksum: true})
	for range 100 {
		if _, err := c.Lookup(context.Background(), hashOf(unknown)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown key: %v", err)
		}
		c.rc.Wait()
	}
	if n := src.byHash.Load(); n != 1 {
		t.Fatalf("100 lookups of one unknown key made %d queries, want 1", n)
	}
	time.Sleep(300 * time.Millisecond)
	c.Lookup(context.Background(), hashOf(unknown))
	if n := src.byHash.Load(); n != 2 {
		t.Fatalf("after the negative TTL, want a second query, got %d total", n)
	}
	if c.Stats().NegativeHits != 99 {
		t.Errorf("negative hits %d, want 99", c.Stats().NegativeHits)
	}
}

func TestFeedAppliesRevocationAndCreation(t *testing.T) {
	db := openDB(t)
	key, rec := insertKey(t, db, "acme")
	c := newCache(t, db, Config{WarmStart: true})
	run(t, c)
	got, err := c.Lookup(context.Background(), hashOf(key))
	if err != nil || !got.RevokedAt.IsZero() {
		t.Fatalf("warm key: %v %v", got, err)
	}
	if _, err := db.RevokeKey(context.Background(), rec.ID, time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		r, err := c.Lookup(context.Background(), hashOf(key))
		return err == nil && r.Status(time.Now()) == keys.StatusRevoked
	})
	// A key whose hash was remembered as unknown is found once created:
	// the feed removes the remembered miss.
	fresh, _ := keys.Generate(keys.Format{Prefix: "sk_test_", Checksum: true})
	if _, err := c.Lookup(context.Background(), hashOf(fresh)); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	id, _ := keys.NewID("key")
	if _, err := db.InsertKey(context.Background(), keys.Record{ID: id, Hash: hashOf(fresh), Prefix: fresh[:15], Tenant: "acme", Env: keys.EnvTest, Lineage: id, CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { _, err := c.Lookup(context.Background(), hashOf(fresh)); return err == nil })
}

func TestWarmStartLoadsActiveKeys(t *testing.T) {
	db := openDB(t)
	var ks []string
	for range 20 {
		k, _ := insertKey(t, db, "acme")
		ks = append(ks, k)
	}
	src := &counting{DB: db}
	c := newCache(t, src, Config{WarmStart: true})
	run(t, c)
	for _, k := range ks {
		if _, err := c.Lookup(context.Background(), hashOf(k)); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.byHash.Load(); n != 0 {
		t.Fatalf("warm keys caused %d misses", n)
	}
}

func TestOutage(t *testing.T) {
	db := openDB(t)
	key, _ := insertKey(t, db, "acme")
	src := &counting{DB: db}
	c := newCache(t, src, Config{WarmStart: true})
	run(t, c)
	src.down.Store(true)
	eventually(t, func() bool { return !c.DBUp() })
	if _, err := c.Lookup(context.Background(), hashOf(key)); err != nil {
		t.Fatalf("a cached key must keep working in an outage: %v", err)
	}
	if c.Stats().StaleServes == 0 {
		t.Error("stale serve not counted")
	}
	unknown, _ := keys.Generate(keys.Format{Prefix: "sk_test_", Checksum: true})
	if _, err := c.Lookup(context.Background(), hashOf(unknown)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown key in an outage: %v, want ErrUnavailable (never ErrNotFound)", err)
	}
	// Changes made meanwhile apply once the database is back.
	_, rec2 := insertKey(t, db, "acme")
	db.RevokeKey(context.Background(), rec2.ID, time.Now().UTC())
	src.down.Store(false)
	eventually(t, func() bool { return c.DBUp() })
	eventually(t, func() bool { return c.Stats().Version >= rec2.Version+1 })
}

// TestStaleFillIsDropped: a miss whose query began before a change must
// not cache its older answer over the change.
func TestStaleFillIsDropped(t *testing.T) {
	db := openDB(t)
	key, rec := insertKey(t, db, "acme")
	c := newCache(t, db, Config{})
	if _, err := c.Lookup(context.Background(), hashOf(key)); err != nil {
		t.Fatal(err)
	}
	c.rc.Wait()
	gen := c.gen.Load()
	rev := rec
	rev.RevokedAt = time.Now()
	c.apply(store.Changes{Keys: []keys.Record{rev}, Version: rec.Version + 1})
	c.store(gen, hashOf(key), c.entryOf(&rec)) // the fill that raced the change
	c.rc.Wait()
	got, found, _ := c.Peek(hashOf(key))
	if !found || got.RevokedAt.IsZero() {
		t.Fatalf("stale fill overwrote the revocation: %+v", got)
	}
}

func eventually(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func BenchmarkLookupHit(b *testing.B) {
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "k.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.Migrate(context.Background())
	key, _ := keys.Generate(keys.Format{Prefix: "sk_test_", Checksum: true})
	id, _ := keys.NewID("key")
	db.InsertKey(context.Background(), keys.Record{ID: id, Hash: hashOf(key), Tenant: "t", Env: keys.EnvTest, Lineage: id, CreatedAt: time.Now().UTC()})
	c, _ := New(Config{MaxKeys: 100, NegativeTTL: time.Minute, PollInterval: time.Second, QueryTimeout: time.Second}, db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer c.Close()
	h := hashOf(key)
	c.Lookup(context.Background(), h)
	c.rc.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Lookup(context.Background(), h); err != nil {
			b.Fatal(err)
		}
	}
}
