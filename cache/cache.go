// Package cache holds key records in memory, keyed by key hash, and keeps
// them current from the key database's change feed. Every Check reads it.
// Unknown keys are remembered apart from real ones, in a bounded set of
// their own, so no flood of them can push out a real key's record; and
// misses reach the database only within a budget of look-ups per second,
// one query per hash however many callers miss at once. Over the budget a
// miss is answered from what the cache knows: unknown while it holds every
// active key, unavailable while it may not.
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
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/tracing"
)

// Errors Lookup returns; callers check them with errors.Is.
var (
	// ErrNotFound: no key has this hash (a bad credential, not a failure).
	ErrNotFound = errors.New("cache: unknown key")
	// ErrUnavailable: the key is not cached and the database cannot be asked.
	ErrUnavailable = errors.New("cache: key database unavailable")
	// ErrOverBudget is the ErrUnavailable of a miss over the look-up
	// budget while the cache may not hold every key: the database was not
	// asked, and a second later it may be.
	ErrOverBudget = fmt.Errorf("%w: look-ups for cache misses over budget", ErrUnavailable)
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

// Defaults of the Config fields whose zero value means "default".
const (
	DefaultNegativeMax = 100_000
	DefaultMissLookups = 1_000
)

// Config sizes the cache and paces its refresh.
type Config struct {
	MaxKeys int64 // capacity in records of existing keys
	// NegativeMax is how many unknown keys are remembered at most, apart
	// from MaxKeys (0: DefaultNegativeMax); each costs 40 bytes.
	NegativeMax int64
	NegativeTTL time.Duration // how long an unknown hash is remembered
	// MissLookups is how many database look-ups misses may make per
	// second on this replica (0: DefaultMissLookups), a second's worth at
	// once.
	MissLookups  int64
	PollInterval time.Duration // change-feed poll; the backstop when notices exist
	QueryTimeout time.Duration // per database call made by the cache
	WarmStart    bool          // load active keys before reporting ready
	// Tracer, if set, traces a miss's database query as a child of the
	// caller's span (when that is recorded); nil: no spans.
	Tracer trace.Tracer
	// Now is the clock of decisions (key status, the look-up budget,
	// negative TTLs); nil means time.Now.
	Now func() time.Time
}

// Stats are the cache's counters since start, read by the metrics endpoint.
type Stats struct {
	// Misses counts database look-ups made for misses: the budget spent.
	Hits, Misses, NegativeHits, StaleServes, DBErrors uint64
	// OverBudgetUnknown counts misses over the look-up budget answered as
	// unknown keys (the cache was complete), OverBudgetUnavailable those
	// answered as unavailable (it was not).
	OverBudgetUnknown, OverBudgetUnavailable uint64
	// Evictions counts records of active keys pushed out of the cache, or
	// refused by it, for want of room: each makes the cache partial.
	Evictions uint64
	// LastRefresh is when the change feed was last read successfully.
	LastRefresh time.Time
	DBUp, Ready bool
	// Complete: the cache holds every active key (see Cache.Complete).
	Complete bool
	Version  int64
}

type grantKey struct{ tenant, org string }

// Cache is the in-memory key cache. Create it with New and run Run.
type Cache struct {
	cfg Config
	src source
	log *slog.Logger
	rc  *ristretto.Cache[uint64, *entry]
	neg *negative
	sf  singleflight.Group
	// budget paces the database look-ups of misses.
	budget *budget

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
	// warm: the warm start loaded every active key. partial: since then
	// an active key's record was pushed out or could not be stored.
	warm, partial atomic.Bool
	closing       atomic.Bool // Close has begun
	// staleAfter is how old the last read of the change feed may be for
	// the cache to count as complete, in nanoseconds.
	staleAfter int64

	hits, misses, negHits, stale, dbErrors  atomic.Uint64
	overUnknown, overUnavailable, evictions atomic.Uint64
	lastRefresh                             atomic.Int64
	// overLogged is what the refresh loop last reported of the over-budget
	// counters, and when (its goroutine only).
	overLogged budgetReport
}

// New builds a cache over src. It starts nothing: call Run.
func New(cfg Config, src source, log *slog.Logger) (*Cache, error) {
	if cfg.MaxKeys < 1 {
		return nil, fmt.Errorf("cache: MaxKeys must be at least 1, got %d", cfg.MaxKeys)
	}
	if cfg.NegativeMax < 0 || cfg.MissLookups < 0 {
		return nil, fmt.Errorf("cache: NegativeMax and MissLookups must not be negative, got %d and %d", cfg.NegativeMax, cfg.MissLookups)
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
	if cfg.NegativeMax == 0 {
		cfg.NegativeMax = DefaultNegativeMax
	}
	if cfg.MissLookups == 0 {
		cfg.MissLookups = DefaultMissLookups
	}
	c := &Cache{cfg: cfg, src: src, log: log, wake: make(chan struct{}, 1),
		neg: newNegative(cfg.NegativeMax, int64(cfg.NegativeTTL)), budget: newBudget(cfg.MissLookups),
		staleAfter: int64(2*cfg.PollInterval + cfg.QueryTimeout)}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		// Ten counters per item is ristretto's advice for admission accuracy.
		NumCounters: cfg.MaxKeys * 10,
		MaxCost:     cfg.MaxKeys,
		BufferItems: 64,
		// Hash is already SHA-256: its first 8 bytes index the cache, and
		// the full hash is compared on every hit (see Lookup).
		KeyToHash:          func(k uint64) (uint64, uint64) { return k, 0 },
		IgnoreInternalCost: true,
		OnEvict:            func(it *ristretto.Item[*entry]) { c.evicted(it.Value) },
		OnReject:           c.rejected,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.rc = rc
	c.intern.strs, c.intern.lists = map[string]string{}, map[string][]string{}
	empty := map[grantKey]keys.Grant{}
	c.grants.Store(&empty)
	c.dbUp.Store(true)
	return c, nil
}

func slot(h *keys.Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// Lookup returns the record of the key with hash h: from memory, else from
// the database within the look-up budget. ErrNotFound means no such key
// (or, over the budget, none in a cache that holds every active key);
// ErrUnavailable means the database could not be asked and the key is not
// cached (ErrOverBudget when it was not asked because of the budget).
func (c *Cache) Lookup(ctx context.Context, h keys.Hash) (keys.Record, error) {
	if e, ok := c.rc.Get(slot(&h)); ok && e.hash == h {
		c.count()
		return e.record(), nil
	}
	now := c.cfg.Now().UnixNano()
	if c.neg.has(&h, now) {
		c.negHits.Add(1)
		return keys.Record{}, ErrNotFound
	}
	if c.budget.spent(now) {
		// Answered before singleflight: a flood over the budget costs no
		// allocation and no query.
		return keys.Record{}, c.overBudget()
	}
	v, err, _ := c.sf.Do(string(h[:]), func() (any, error) { return c.fill(ctx, h) })
	if err != nil {
		return keys.Record{}, err
	}
	return v.(*entry).record(), nil
}

// fill asks the database for one hash, if the budget allows, and caches the
// answer. The query runs detached from the first caller's context: other
// callers share its result.
func (c *Cache) fill(ctx context.Context, h keys.Hash) (*entry, error) {
	if !c.budget.take(c.cfg.Now().UnixNano()) {
		return nil, c.overBudget()
	}
	c.misses.Add(1)
	gen := c.gen.Load()
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.QueryTimeout)
	defer cancel()
	var span trace.Span
	if c.cfg.Tracer != nil {
		qctx, span = tracing.Child(qctx, c.cfg.Tracer, "key database lookup", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(attribute.String("db.operation.name", "KeyByHash")))
	}
	rec, err := c.src.KeyByHash(qctx, h)
	if span != nil {
		span.SetAttributes(attribute.Bool("keygate.key.found", err == nil))
		failed := err
		if errors.Is(err, store.ErrNotFound) {
			failed = nil // an unknown key is an answer, not a failure
		}
		tracing.End(span, failed)
	}
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

// overBudget answers a miss the budget leaves no look-up for: a cache that
// holds every active key knows the key does not exist (or was created so
// recently that the change feed has not brought it yet: a retry soon
// finds it); one that may not must say it cannot tell.
func (c *Cache) overBudget() error {
	if c.Complete() {
		c.overUnknown.Add(1)
		return ErrNotFound
	}
	c.overUnavailable.Add(1)
	return ErrOverBudget
}

// store caches the answer of a fill (e nil: no such key) unless a change
// was applied since the fill's query began.
func (c *Cache) store(gen uint64, h keys.Hash, e *entry) {
	c.fillMu.RLock()
	defer c.fillMu.RUnlock()
	if c.gen.Load() != gen {
		return // a change landed while we asked: our answer may predate it
	}
	if e == nil {
		c.neg.add(&h, c.cfg.Now().UnixNano())
		return
	}
	// A Set ristretto drops costs one more miss, never a wrong answer.
	c.rc.Set(slot(&h), e, 1)
}

// Peek answers from memory only: found is set when the cache knows the
// hash, and known when it knows it as an existing key (not a remembered
// miss). It never asks the database, so a caller can decide whether a
// lookup may cost a query.
func (c *Cache) Peek(h keys.Hash) (rec keys.Record, found, known bool) {
	if e, ok := c.rc.Get(slot(&h)); ok && e.hash == h {
		c.count()
		return e.record(), true, true
	}
	if c.neg.has(&h, c.cfg.Now().UnixNano()) {
		c.negHits.Add(1)
		return keys.Record{}, true, false
	}
	return keys.Record{}, false, false
}

// count records a hit, and a stale serve while the database is down.
func (c *Cache) count() {
	c.hits.Add(1)
	if !c.dbUp.Load() {
		c.stale.Add(1)
	}
}

// evicted notes a record ristretto pushed out to make room. Records of
// revoked or expired keys may go; an active key's makes the cache partial.
// e is nil for a record deleted meanwhile.
func (c *Cache) evicted(e *entry) {
	if e != nil && !c.closing.Load() && e.active(c.cfg.Now().UnixNano()) {
		c.lost()
	}
}

// rejected notes a record ristretto's admission policy refused: for want
// of room (TinyLFU judged it less used than what the cache holds), or
// because the key was stored meanwhile, which loses nothing.
func (c *Cache) rejected(it *ristretto.Item[*entry]) {
	e := it.Value
	if e == nil {
		return
	}
	if cached(c.rc, it.Key) {
		return
	}
	c.evicted(e)
}

// lost counts an active key's record the cache could not keep and, the
// first time, says that the cache no longer holds every key.
func (c *Cache) lost() {
	c.evictions.Add(1)
	if !c.partial.Swap(true) {
		c.log.Warn("key cache is partial: the active keys outgrew cache.max_keys, so the most used are kept; "+
			"misses over cache.miss_lookups_per_second now get 503 instead of 401 until a restart with a larger cache",
			slog.Int64("max_keys", c.cfg.MaxKeys))
	}
}

// Complete reports whether the cache holds every active key: the warm
// start loaded them all, none was pushed out or refused since, and the
// change feed was read successfully within two poll intervals. A miss in a
// complete cache is almost certainly an unknown key.
func (c *Cache) Complete() bool {
	if !c.warm.Load() || c.partial.Load() || !c.dbUp.Load() {
		return false
	}
	return time.Now().UnixNano()-c.lastRefresh.Load() <= c.staleAfter
}

// NegativeEntries counts the unknown keys remembered now. It reads every
// slot of the negative set: for metrics, not for Check.
func (c *Cache) NegativeEntries() int { return c.neg.len(c.cfg.Now().UnixNano()) }

// NegativeCapacity is how many unknown keys can be remembered at most
// (cache.negative_max rounded up to whole sets): 40 bytes each.
func (c *Cache) NegativeCapacity() int64 { return c.neg.capacity() }

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
		OverBudgetUnknown: c.overUnknown.Load(), OverBudgetUnavailable: c.overUnavailable.Load(),
		Evictions: c.evictions.Load(),
		DBUp:      c.dbUp.Load(), Ready: c.ready.Load(), Complete: c.Complete(), Version: c.version.Load(),
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

// Close releases the cache's memory and goroutines. Call it once Run has
// returned and no Lookup is in flight: ristretto must not be written to
// after it is closed.
func (c *Cache) Close() {
	// ristretto's Close evicts every record through OnEvict: that is not
	// an active key pushed out for want of room.
	c.closing.Store(true)
	c.rc.Close()
}
