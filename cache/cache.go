// Package cache holds key records in memory, keyed by key hash, and keeps
// them current from the key database's change feed. Every Check reads it;
// only misses reach the database, one query per hash however many callers
// miss at once, and unknown hashes are remembered for a short time so a
// flood of bad keys stays off the database.
package cache

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// Errors Lookup returns; callers check them with errors.Is.
var (
	// ErrNotFound: no key has this hash (a bad credential, not a failure).
	ErrNotFound = errors.New("cache: unknown key")
	// ErrUnavailable: the key is not cached and the database cannot be asked.
	ErrUnavailable = errors.New("cache: key database unavailable")
)

// source is what the cache needs of the key database. *store implementations
// satisfy it; tests may pass anything that does.
type source interface {
	KeyByHash(ctx context.Context, h keys.Hash) (keys.Record, error)
	ActiveKeys(ctx context.Context, now time.Time, afterID string, limit int) ([]keys.Record, error)
	ListGrants(ctx context.Context, tenant string) ([]keys.Grant, error)
	Changes(ctx context.Context, after int64, limit int) (store.Changes, error)
	Version(ctx context.Context) (int64, error)
}

var _ source = (store.DB)(nil)

// Config sizes the cache and paces its refresh.
type Config struct {
	MaxKeys      int64         // capacity in records
	NegativeTTL  time.Duration // how long an unknown hash is remembered
	PollInterval time.Duration // change-feed poll; the backstop when notices exist
	QueryTimeout time.Duration // per database call made by the cache
	WarmStart    bool          // load active keys before reporting ready
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Stats are the cache's counters since start, read by the metrics endpoint.
type Stats struct {
	Hits, Misses, NegativeHits, StaleServes, DBErrors uint64
	// LastRefresh is when the change feed was last read successfully.
	LastRefresh time.Time
	DBUp, Ready bool
	Version     int64
}

type grantKey struct{ tenant, org string }

// Cache is the in-memory key cache. Create it with New and run Run.
type Cache struct {
	cfg Config
	src source
	log *slog.Logger
	rc  *ristretto.Cache[uint64, *entry]
	sf  singleflight.Group

	// fillMu and gen keep a miss's fill from overwriting a newer change:
	// a fill is stored only if no change was applied since its query began.
	fillMu sync.RWMutex
	gen    atomic.Uint64

	intern  interner
	grants  atomic.Pointer[map[grantKey]keys.Grant]
	version atomic.Int64
	ready   atomic.Bool
	dbUp    atomic.Bool
	wake    chan struct{}

	hits, misses, negHits, stale, dbErrors atomic.Uint64
	lastRefresh                            atomic.Int64
}

// New builds a cache over src. It starts nothing: call Run.
func New(cfg Config, src source, log *slog.Logger) (*Cache, error) {
	if cfg.MaxKeys < 1 {
		return nil, fmt.Errorf("cache: MaxKeys must be at least 1, got %d", cfg.MaxKeys)
	}
	if cfg.NegativeTTL <= 0 || cfg.PollInterval <= 0 || cfg.QueryTimeout <= 0 {
		return nil, errors.New("cache: NegativeTTL, PollInterval and QueryTimeout must be positive")
	}
	if src == nil || log == nil {
		return nil, errors.New("cache: source and logger are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		// Ten counters per item is ristretto's advice for admission accuracy.
		NumCounters: cfg.MaxKeys * 10,
		MaxCost:     cfg.MaxKeys,
		BufferItems: 64,
		// Hash is already SHA-256: its first 8 bytes index the cache, and
		// the full hash is compared on every hit (see Lookup).
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{cfg: cfg, src: src, log: log, rc: rc, wake: make(chan struct{}, 1)}
	c.intern.strs, c.intern.lists = map[string]string{}, map[string][]string{}
	empty := map[grantKey]keys.Grant{}
	c.grants.Store(&empty)
	c.dbUp.Store(true)
	return c, nil
}

func slot(h *keys.Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// Lookup returns the record of the key with hash h: from memory, else from
// the database. ErrNotFound means no such key; ErrUnavailable means the
// database could not be asked and the key is not cached.
func (c *Cache) Lookup(ctx context.Context, h keys.Hash) (keys.Record, error) {
	if e, ok := c.rc.Get(slot(&h)); ok && e.hash == h {
		c.count(e)
		if !e.known {
			return keys.Record{}, ErrNotFound
		}
		return e.record(), nil
	}
	c.misses.Add(1)
	v, err, _ := c.sf.Do(string(h[:]), func() (any, error) { return c.fill(ctx, h) })
	if err != nil {
		return keys.Record{}, err
	}
	return v.(*entry).record(), nil
}

// fill asks the database for one hash and caches the answer. The query runs
// detached from the first caller's context: other callers share its result.
func (c *Cache) fill(ctx context.Context, h keys.Hash) (*entry, error) {
	gen := c.gen.Load()
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.QueryTimeout)
	defer cancel()
	rec, err := c.src.KeyByHash(qctx, h)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.store(gen, h, nil)
		return nil, ErrNotFound
	case err != nil:
		c.dbErrors.Add(1)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	e := c.entryOf(&rec)
	c.store(gen, h, e)
	return e, nil
}

func (c *Cache) store(gen uint64, h keys.Hash, e *entry) {
	c.fillMu.RLock()
	defer c.fillMu.RUnlock()
	if c.gen.Load() != gen {
		return // a change landed while we asked: our answer may predate it
	}
	if e == nil {
		c.rc.SetWithTTL(slot(&h), &entry{hash: h}, 1, c.cfg.NegativeTTL)
		return
	}
	c.rc.Set(slot(&h), e, 1)
}

// Peek answers from memory only: found is set when the cache knows the
// hash, and known when it knows it as an existing key (not a remembered
// miss). It never asks the database, so a caller can decide whether a
// lookup may cost a query.
func (c *Cache) Peek(h keys.Hash) (rec keys.Record, found, known bool) {
	e, ok := c.rc.Get(slot(&h))
	if !ok || e.hash != h {
		return keys.Record{}, false, false
	}
	c.count(e)
	if !e.known {
		return keys.Record{}, true, false
	}
	return e.record(), true, true
}

// count records a hit, negative hit or stale serve.
func (c *Cache) count(e *entry) {
	switch {
	case !e.known:
		c.negHits.Add(1)
	case !c.dbUp.Load():
		c.hits.Add(1)
		c.stale.Add(1)
	default:
		c.hits.Add(1)
	}
}

// Grant returns the grant in force for tenant in org.
func (c *Cache) Grant(tenant, org string) (keys.Grant, bool) {
	g, ok := (*c.grants.Load())[grantKey{tenant, org}]
	return g, ok
}

// Ready reports whether the first load (grants, and keys when WarmStart) is done.
func (c *Cache) Ready() bool { return c.ready.Load() }

// DBUp reports whether the last database call made by the refresh loop worked.
func (c *Cache) DBUp() bool { return c.dbUp.Load() }

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), NegativeHits: c.negHits.Load(),
		StaleServes: c.stale.Load(), DBErrors: c.dbErrors.Load(),
		DBUp: c.dbUp.Load(), Ready: c.ready.Load(), Version: c.version.Load(),
	}
	if ns := c.lastRefresh.Load(); ns != 0 {
		s.LastRefresh = time.Unix(0, ns)
	}
	return s
}

// Notify asks the refresh loop to read the change feed now.
func (c *Cache) Notify() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close releases the cache's memory and goroutines.
func (c *Cache) Close() { c.rc.Close() }
