// Package usage counts each key's decisions per hour (allowed,
// rate_limited, denied) and notes when it was last let through, in
// memory, and writes both to the key database in batches: at most one
// row per key and hour per flush, never one write per request, and
// nothing dropped when a write fails.
package usage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/store"
)

// writer stores counts and use times. store.DB implements it.
type writer interface {
	AddUsage(ctx context.Context, batch []store.UsageCount) error
	TouchLastUsed(ctx context.Context, used map[string]time.Time) error
}

// Outcome is what a decision about a known key came to.
type Outcome uint8

// Outcomes.
const (
	Allowed     Outcome = iota // let through (an introspection answered included)
	RateLimited                // refused by the key's rate limit (429)
	Denied                     // any other refusal of a known key: revoked, expired, route, organization, scope
	numOutcomes
)

// Config paces the flushes.
type Config struct {
	// FlushInterval paces the counts' writes (usage.flush_interval).
	FlushInterval time.Duration
	// LastUsedInterval paces last_used_at's writes
	// (database.last_used_flush); zero: FlushInterval.
	LastUsedInterval time.Duration
	// Timeout bounds one flush, the final one at shutdown included.
	Timeout time.Duration
}

// shards spreads keys over locks: no lock is shared by all keys, and a
// Record holds its shard's only for a map update.
const shards = 64

// hourKey is a key's hour: Unix seconds of the hour's start.
type hourKey struct {
	id   string
	hour int64
}

// counts are a key's decisions in one hour, and the last allowed one
// (zero: none since last_used_at was last collected).
type counts struct {
	tenant   string
	n        [numOutcomes]int64
	lastUsed time.Time
}

// shard holds the counts of the keys whose ids hash to it. A key's last
// use is kept in its counts entry, so that a Record is one map lookup; it
// moves to used when the entry is taken for writing, and FlushLastUsed
// collects both.
type shard struct {
	mu     sync.Mutex
	counts map[hourKey]*counts
	used   map[string]time.Time
	_      [64]byte // keeps neighbouring shards' locks off one cache line
}

// noteUsed keeps at as id's last use unless a later one is there.
func (s *shard) noteUsed(id string, at time.Time) {
	if prev, ok := s.used[id]; !ok || at.After(prev) {
		s.used[id] = at
	}
}

// Recorder collects counts and use times in memory. Record is safe for
// concurrent use and allocates only for a key's first decision in an hour
// since the last flush.
type Recorder struct {
	cfg    Config
	w      writer
	log    *slog.Logger
	shards [shards]shard
	flush  sync.Mutex // one flush at a time

	failures atomic.Uint64 // flushes that failed
	written  atomic.Uint64 // key-hours written
	// inFlight and usedInFlight count what a flush has taken out of the
	// shards and not yet written or put back: still pending, so the
	// pending gauges do not drop to zero while a write to a database that
	// is down waits for its timeout.
	inFlight, usedInFlight atomic.Int64
	failing                bool // the last flush failed (Run's goroutine only)
}

// New returns a Recorder writing through w.
func New(cfg Config, w writer, log *slog.Logger) (*Recorder, error) {
	if cfg.FlushInterval <= 0 || cfg.LastUsedInterval < 0 {
		return nil, errors.New("usage: FlushInterval must be positive")
	}
	if cfg.LastUsedInterval == 0 {
		cfg.LastUsedInterval = cfg.FlushInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if w == nil || log == nil {
		return nil, errors.New("usage: writer and logger are required")
	}
	r := &Recorder{cfg: cfg, w: w, log: log}
	for i := range r.shards {
		r.shards[i].counts = map[hourKey]*counts{}
		r.shards[i].used = map[string]time.Time{}
	}
	return r, nil
}

func (r *Recorder) shard(id string) *shard {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return &r.shards[h%shards]
}

// Record counts one decision about key id of tenant at at, and on Allowed
// notes the key's use.
func (r *Recorder) Record(id, tenant string, o Outcome, at time.Time) {
	if o >= numOutcomes {
		return
	}
	k := hourKey{id: id, hour: hourOf(at)}
	s := r.shard(id)
	s.mu.Lock()
	c := s.counts[k]
	if c == nil {
		c = &counts{tenant: tenant}
		s.counts[k] = c
	}
	c.n[o]++
	if o == Allowed && at.After(c.lastUsed) {
		c.lastUsed = at
	}
	s.mu.Unlock()
}

// hourOf is the Unix seconds of the start of at's hour.
func hourOf(at time.Time) int64 {
	s := at.Unix()
	r := s % 3600
	if r < 0 {
		r += 3600
	}
	return s - r
}

// Stats are the recorder's counters, for metrics.
type Stats struct {
	Pending       int    // key-hours counted and not yet written
	PendingUsed   int    // keys whose last use waits apart from their counts
	FlushFailures uint64 // flushes (of counts or last use) that failed
	Written       uint64 // key-hours written
}

// Stats reads the counters.
func (r *Recorder) Stats() Stats {
	st := Stats{FlushFailures: r.failures.Load(), Written: r.written.Load(),
		Pending: int(r.inFlight.Load()), PendingUsed: int(r.usedInFlight.Load())}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		st.Pending += len(s.counts)
		st.PendingUsed += len(s.used)
		s.mu.Unlock()
	}
	return st
}

// Run flushes the counts every FlushInterval and the use times every
// LastUsedInterval until ctx ends, then flushes what is left (with its
// own timeout: shutdown must not lose the last interval). A failed flush
// keeps its counts for the next one.
func (r *Recorder) Run(ctx context.Context) error {
	counts := time.NewTicker(r.cfg.FlushInterval)
	defer counts.Stop()
	used := time.NewTicker(r.cfg.LastUsedInterval)
	defer used.Stop()
	for {
		select {
		case <-ctx.Done():
			return r.final(ctx)
		case <-counts.C:
			n, err := r.flushCounts(ctx)
			r.logged(ctx, n, err)
		case <-used.C:
			n, err := r.flushLastUsed(ctx)
			r.logged(ctx, n, err)
		}
	}
}

// logged logs a flush's failure when writes start failing, and their
// recovery, once each: not every interval of an outage.
func (r *Recorder) logged(ctx context.Context, wrote int, err error) {
	switch {
	case err != nil && ctx.Err() == nil && !r.failing:
		r.failing = true
		r.log.Warn("writing usage failed; counts and last use are kept and written when the database is back",
			slog.Any("error", err), slog.Int("key_hours", r.Stats().Pending))
	case err == nil && wrote > 0 && r.failing:
		r.failing = false
		r.log.Info("writing usage again", slog.Uint64("failed_flushes", r.failures.Load()))
	}
}

// final is the flush at shutdown: tried again every finalRetry (a
// database that blinked as the process stops loses nothing) until Timeout
// has passed; what is still unwritten then is lost, and said so.
func (r *Recorder) final(ctx context.Context) error {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
	defer cancel()
	for {
		err := r.Flush(fctx)
		if err == nil {
			return nil
		}
		select {
		case <-fctx.Done():
			st := r.Stats()
			r.log.Error("usage not written at shutdown: lost", slog.Any("error", err),
				slog.Int("key_hours", st.Pending), slog.Int("keys_last_used", st.PendingUsed))
			return err
		case <-time.After(finalRetry):
		}
	}
}

const finalRetry = 250 * time.Millisecond

// Flush writes everything pending: counts, then use times.
func (r *Recorder) Flush(ctx context.Context) error {
	return errors.Join(r.FlushCounts(ctx), r.FlushLastUsed(ctx))
}

// FlushCounts writes the pending counts in one batch. On failure they go
// back, added to whatever was counted meanwhile, for the next flush.
func (r *Recorder) FlushCounts(ctx context.Context) error {
	_, err := r.flushCounts(ctx)
	return err
}

// flushCounts is FlushCounts, saying how many key-hours it wrote.
func (r *Recorder) flushCounts(ctx context.Context) (int, error) {
	r.flush.Lock()
	defer r.flush.Unlock()
	var batch []store.UsageCount
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if len(s.counts) == 0 {
			s.mu.Unlock()
			continue
		}
		taken := s.counts
		s.counts = make(map[hourKey]*counts, len(taken))
		for k, c := range taken {
			if !c.lastUsed.IsZero() {
				s.noteUsed(k.id, c.lastUsed)
			}
		}
		s.mu.Unlock()
		for k, c := range taken {
			batch = append(batch, store.UsageCount{KeyID: k.id, Tenant: c.tenant, Start: time.Unix(k.hour, 0).UTC(),
				Allowed: c.n[Allowed], RateLimited: c.n[RateLimited], Denied: c.n[Denied]})
		}
	}
	if len(batch) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	// Zeroed after the rows are back, not before: a reader may see them
	// twice for a moment, never not at all.
	r.inFlight.Store(int64(len(batch)))
	defer r.inFlight.Store(0)
	if err := r.w.AddUsage(ctx, batch); err != nil {
		r.failures.Add(1)
		for _, b := range batch {
			r.restore(b)
		}
		return 0, err
	}
	r.written.Add(uint64(len(batch)))
	return len(batch), nil
}

// restore adds an unwritten row back to the pending counts.
func (r *Recorder) restore(b store.UsageCount) {
	k := hourKey{id: b.KeyID, hour: b.Start.Unix()}
	s := r.shard(b.KeyID)
	s.mu.Lock()
	c := s.counts[k]
	if c == nil {
		c = &counts{tenant: b.Tenant}
		s.counts[k] = c
	}
	c.n[Allowed] += b.Allowed
	c.n[RateLimited] += b.RateLimited
	c.n[Denied] += b.Denied
	s.mu.Unlock()
}

// FlushLastUsed writes the pending use times. On failure they go back
// (unless newer ones arrived meanwhile) for the next flush.
func (r *Recorder) FlushLastUsed(ctx context.Context) error {
	_, err := r.flushLastUsed(ctx)
	return err
}

// flushLastUsed is FlushLastUsed, saying how many keys it wrote.
func (r *Recorder) flushLastUsed(ctx context.Context) (int, error) {
	r.flush.Lock()
	defer r.flush.Unlock()
	batch := map[string]time.Time{}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		for k, c := range s.counts {
			if !c.lastUsed.IsZero() {
				if prev, ok := batch[k.id]; !ok || c.lastUsed.After(prev) {
					batch[k.id] = c.lastUsed
				}
				c.lastUsed = time.Time{}
			}
		}
		if len(s.used) > 0 {
			for id, at := range s.used {
				if prev, ok := batch[id]; !ok || at.After(prev) {
					batch[id] = at
				}
			}
			s.used = make(map[string]time.Time, len(s.used))
		}
		s.mu.Unlock()
	}
	if len(batch) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	r.usedInFlight.Store(int64(len(batch)))
	defer r.usedInFlight.Store(0)
	if err := r.w.TouchLastUsed(ctx, batch); err != nil {
		r.failures.Add(1)
		for id, at := range batch {
			s := r.shard(id)
			s.mu.Lock()
			s.noteUsed(id, at)
			s.mu.Unlock()
		}
		return 0, err
	}
	return len(batch), nil
}
