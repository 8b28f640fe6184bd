// Package usage batches the times keys were used and writes them to the key
// database's last_used_at: at most one write per key per flush interval,
// never one per request, and nothing dropped when a write fails.
package usage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// writer stores use times. store.DB implements it.
type writer interface {
	TouchLastUsed(ctx context.Context, used map[string]time.Time) error
}

// Config paces the flushes.
type Config struct {
	FlushInterval time.Duration
	// Timeout bounds one flush, the final one at shutdown included.
	Timeout time.Duration
}

const shards = 32

type shard struct {
	mu      sync.Mutex
	pending map[string]time.Time
}

// Recorder collects use times in memory. Touch is safe for concurrent use.
type Recorder struct {
	cfg    Config
	w      writer
	log    *slog.Logger
	shards [shards]shard
	flush  sync.Mutex // one flush at a time
}

// New returns a Recorder writing through w.
func New(cfg Config, w writer, log *slog.Logger) (*Recorder, error) {
	if cfg.FlushInterval <= 0 {
		return nil, errors.New("usage: FlushInterval must be positive")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if w == nil || log == nil {
		return nil, errors.New("usage: writer and logger are required")
	}
	r := &Recorder{cfg: cfg, w: w, log: log}
	for i := range r.shards {
		r.shards[i].pending = map[string]time.Time{}
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

// Touch notes that key id was used at at.
func (r *Recorder) Touch(id string, at time.Time) {
	s := r.shard(id)
	s.mu.Lock()
	if prev, ok := s.pending[id]; !ok || at.After(prev) {
		s.pending[id] = at
	}
	s.mu.Unlock()
}

// Pending returns how many keys wait to be written.
func (r *Recorder) Pending() int {
	n := 0
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		n += len(s.pending)
		s.mu.Unlock()
	}
	return n
}

// Run flushes every interval until ctx ends, then flushes what is left
// (with its own timeout: shutdown must not lose the last interval).
func (r *Recorder) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
			defer cancel()
			return r.Flush(fctx)
		case <-t.C:
			if err := r.Flush(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("writing last_used_at failed; will retry", slog.Any("error", err), slog.Int("keys", r.Pending()))
			}
		}
	}
}

// Flush writes everything pending. On failure the times go back into the
// pending set (unless newer ones arrived meanwhile) for the next flush.
func (r *Recorder) Flush(ctx context.Context) error {
	r.flush.Lock()
	defer r.flush.Unlock()
	batch := map[string]time.Time{}
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		if len(s.pending) > 0 {
			for id, at := range s.pending {
				batch[id] = at
			}
			s.pending = make(map[string]time.Time, len(s.pending))
		}
		s.mu.Unlock()
	}
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	if err := r.w.TouchLastUsed(ctx, batch); err != nil {
		for id, at := range batch {
			r.Touch(id, at)
		}
		return err
	}
	return nil
}
