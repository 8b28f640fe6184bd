package limits

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

const (
	localShards = 64
	// sweepEvery: a shard drops fully refilled buckets (the same as absent
	// ones) after this many inserts, which bounds memory by the buckets
	// active within their longest window.
	sweepEvery = 1024
)

// local is an in-process GCRA with redis_rate's arithmetic (burst = limit,
// emission interval = period/limit), in integer nanoseconds.
type local struct {
	now        func() time.Time
	sweepEvery int // sweepEvery, or less in tests
	seed       maphash.Seed
	shards     [localShards]localShard
}

type localShard struct {
	mu      sync.RWMutex
	buckets map[string]*localBucket
	inserts int
}

// localBucket is one key lineage's state. Its arrival times change by
// compare-and-swap, not under a lock: a hot key's requests never queue
// behind one another, nor behind a holder the scheduler (or, on a virtual
// machine, the hypervisor) has paused.
type localBucket struct {
	plan *plan
	tat  []atomic.Int64 // theoretical arrival time per window, unix nanos
	// dead is set when a sweep or a plan change replaced the bucket: a
	// request that spent in it spends again in its successor.
	dead atomic.Bool
}

func newLocal(now func() time.Time) *local {
	l := &local{now: now, seed: maphash.MakeSeed(), sweepEvery: sweepEvery}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*localBucket{}
	}
	return l
}

// allow spends one request in every window of p, or in none: windows are
// spent in order, and a denial by a later window refunds the earlier ones.
// Between the spend and the refund a concurrent request may see the window
// one fuller than it ends up: it can be denied, never allowed past the limit.
func (l *local) allow(bucket string, p *plan) Result {
	now := l.now().UnixNano()
	sh := l.shard(bucket)
	for {
		b := sh.get(bucket, p, now, l.sweepEvery)
		r, spent := b.spend(p, now)
		if !spent || !b.dead.Load() {
			return r
		}
		// Swept or replaced meanwhile: spend in the bucket that is there now.
		b.refund(p, len(p.windows))
	}
}

func (l *local) shard(bucket string) *localShard {
	return &l.shards[maphash.String(l.seed, bucket)%localShards]
}

func (sh *localShard) get(bucket string, p *plan, now int64, sweepEvery int) *localBucket {
	sh.mu.RLock()
	b := sh.buckets[bucket]
	sh.mu.RUnlock()
	if b != nil && b.plan == p {
		return b
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b = sh.buckets[bucket]; b != nil && b.plan == p {
		return b
	}
	// Swept before the bucket is replaced or made: a sweep clears the mark
	// of the buckets it keeps, and would drop the new one, still full.
	if sh.inserts++; sh.inserts >= sweepEvery {
		sh.sweep(now)
	}
	if b != nil {
		b.dead.Store(true) // its plan changed
	}
	b = &localBucket{plan: p, tat: make([]atomic.Int64, len(p.windows))}
	sh.buckets[bucket] = b
	return b
}

// spend takes one request from every window, or from none.
func (b *localBucket) spend(p *plan, now int64) (Result, bool) {
	states := make([]WindowState, len(p.windows))
	for i, w := range p.windows {
		emission := int64(w.Period) / int64(w.Limit)
		for {
			old := b.tat[i].Load()
			tat := max(old, now)
			nt := tat + emission
			diff := now - (nt - int64(w.Period))
			if diff < 0 {
				b.refund(p, i)
				states[i] = WindowState{Window: w, Remaining: 0, Reset: time.Duration(tat - now)}
				return Result{Allowed: false, Window: w, Limit: w.Limit, Remaining: 0, Reset: time.Duration(tat - now),
					RetryAfter: max(time.Duration(-diff), time.Millisecond), Windows: states[:i+1]}, false
			}
			if b.tat[i].CompareAndSwap(old, nt) {
				states[i] = WindowState{Window: w, Remaining: int(diff / emission), Reset: time.Duration(nt - now)}
				break
			}
		}
	}
	return tightest(states), true
}

// refund gives back the request spent in the first n windows.
func (b *localBucket) refund(p *plan, n int) {
	for i, w := range p.windows[:n] {
		b.tat[i].Add(-int64(w.Period) / int64(w.Limit))
	}
}

// sweep forgets buckets whose every window has refilled.
//
// A bucket is marked dead before its windows are read, and a request reads
// dead after it spent (both sequentially consistent atomics): either the
// sweep sees the spend and keeps the bucket, or the request sees the mark
// and spends again in the bucket that is there after the sweep. Reading
// first and marking after would let a spend land, unseen, in a bucket
// about to be dropped, and its window allow one request too many.
func (sh *localShard) sweep(now int64) {
	sh.inserts = 0
	for k, b := range sh.buckets {
		b.dead.Store(true)
		full := true
		for i := range b.tat {
			if b.tat[i].Load() > now {
				full = false
				break
			}
		}
		if full {
			delete(sh.buckets, k)
		} else {
			b.dead.Store(false)
		}
	}
}

// size is the number of buckets held, for tests.
func (l *local) size() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}
