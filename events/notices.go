package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/duration"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/store"
)

// Sizes of the rate-limit notices' bookkeeping.
const (
	noticeShards = 64
	// maxSeenPerShard bounds the keys remembered per shard (a few MiB in
	// all); past it a shard forgets them all, which costs at most one
	// notice more per key and window, refused by the outbox's dedupe.
	maxSeenPerShard = 4096
	noticeQueue     = 4096
	noticeBatch     = 100
	noticeFlush     = time.Second
	// maxHeldNotices bounds the notices held while the database refuses
	// them; past it the oldest are dropped (and counted).
	maxHeldNotices = 10_000
)

// rateNotices notes each key's first 429 in a window of its plan on the
// Check path — one shard lock of 64, never a lock every key shares — and
// queues it for writeNotices, which adds the notices to the outbox in
// batches off that path.
type rateNotices struct {
	shards  [noticeShards]noticeShard
	queue   chan notice
	dropped atomic.Uint64
}

type noticeShard struct {
	mu   sync.Mutex
	seen map[string]window // by key ID: the window last noticed
	_    [48]byte          // a cache line (64 bytes) of its own, so shards do not contend
}

// window is one window of a plan's period, counted from the Unix epoch.
type window struct {
	period time.Duration
	n      int64
}

type notice struct {
	rec keys.Record
	w   limits.Window
	win window
	at  time.Time
}

func newRateNotices() *rateNotices {
	n := &rateNotices{queue: make(chan notice, noticeQueue)}
	for i := range n.shards {
		n.shards[i].seen = map[string]window{}
	}
	return n
}

// RateLimited notes that rec was refused by its plan's window w at at.
// The Check path calls it for every 429 of a key; the first in each
// window of w's period becomes a key.rate_limited event. It never blocks
// and allocates only for a key not seen before.
func (p *Publisher) RateLimited(rec keys.Record, w limits.Window, at time.Time) {
	rn := p.notices
	if rn == nil || w.Period <= 0 {
		return
	}
	win := window{period: w.Period, n: at.UnixNano() / int64(w.Period)}
	sh := &rn.shards[shardOf(rec.ID)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.seen[rec.ID] == win {
		return
	}
	select {
	case rn.queue <- notice{rec: rec, w: w, win: win, at: at}:
		if len(sh.seen) >= maxSeenPerShard {
			clear(sh.seen)
		}
		sh.seen[rec.ID] = win
	default:
		// The writer is behind: not remembered, so the key's next 429 in
		// this window tries again.
		rn.dropped.Add(1)
	}
}

// shardOf is FNV-1a of id, reduced to a shard.
func shardOf(id string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h % noticeShards)
}

// event is n as an outbox event. Its dedupe names the key and window, so
// that replicas noticing the same key in the same window add one event.
func (n notice) event() store.Event {
	rec := n.rec
	rec.Hash = keys.Hash{}
	start := time.Unix(0, n.win.n*int64(n.win.period)).UTC()
	return store.Event{
		Type: store.EventKeyRateLimited, Tenant: rec.Tenant, KeyID: rec.ID, At: n.at, Actor: keygate, Key: &rec,
		Details: map[string]any{"limit": n.w.Limit, "period": duration.Format(n.w.Period),
			"window_start": start, "window_end": start.Add(n.win.period)},
		Dedupe: fmt.Sprintf("%s/%s/%d/%d", store.EventKeyRateLimited, rec.ID, n.win.period.Milliseconds(), n.win.n),
	}
}

// writeNotices adds queued notices to the outbox, a batch at a time (at
// most noticeFlush after the first of it), until ctx ends; then it writes
// what it holds once more.
func (p *Publisher) writeNotices(ctx context.Context) {
	rn := p.notices
	tick := time.NewTicker(noticeFlush)
	defer tick.Stop()
	var held []store.Event
	flush := func(ctx context.Context) {
		if len(held) == 0 {
			return
		}
		if _, err := p.db.AddEvents(ctx, held); err != nil {
			if over := len(held) - maxHeldNotices; over > 0 {
				held = held[over:]
				rn.dropped.Add(uint64(over))
			}
			if ctx.Err() == nil {
				p.log.Warn("webhooks: writing rate-limit notices failed; will retry", slog.Int("notices", len(held)), slog.Any("error", err))
			}
			return
		}
		held = held[:0]
		p.Notify()
	}
	for {
		select {
		case <-ctx.Done():
			for drained := false; !drained; {
				select {
				case n := <-rn.queue:
					held = append(held, n.event())
				default:
					drained = true
				}
			}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.QueryTimeout)
			flush(wctx)
			cancel()
			return
		case n := <-rn.queue:
			held = append(held, n.event())
			if len(held) >= noticeBatch {
				flush(ctx)
			}
		case <-tick.C:
			flush(ctx)
		}
	}
}
