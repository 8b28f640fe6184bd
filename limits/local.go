package limits

import (
	"hash/maphash"
	"sync"
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
	now    func() time.Time
	seed   maphash.Seed
	shards [localShards]localShard
}

type localShard struct {
	mu      sync.Mutex
	buckets map[string]*localBucket
	inserts int
}

type localBucket struct {
	plan *plan
	tat  []int64 // theoretical arrival time per window, unix nanos
}

func newLocal(now func() time.Time) *local {
	l := &local{now: now, seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].buckets = map[string]*localBucket{}
	}
	return l
}

// allow checks every window first and spends in all of them only if all
// allow: under the bucket's lock that is atomic, so a denial spends nothing.
func (l *local) allow(bucket string, p *plan) Result {
	now := l.now().UnixNano()
	sh := &l.shards[maphash.String(l.seed, bucket)%localShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[bucket]
	if b == nil || b.plan != p {
		b = &localBucket{plan: p, tat: make([]int64, len(p.windows))}
		sh.buckets[bucket] = b
		if sh.inserts++; sh.inserts >= sweepEvery {
			sh.sweep(now)
		}
	}
	states := make([]WindowState, len(p.windows))
	newTat := make([]int64, len(p.windows))
	for i, w := range p.windows {
		emission := int64(w.Period) / int64(w.Limit)
		tat := max(b.tat[i], now)
		nt := tat + emission
		diff := now - (nt - int64(w.Period))
		if diff < 0 {
			retry := time.Duration(-diff)
			states[i] = WindowState{Window: w, Remaining: 0, Reset: time.Duration(tat - now)}
			return Result{Allowed: false, Window: w, Limit: w.Limit, Remaining: 0, Reset: time.Duration(tat - now),
				RetryAfter: max(retry, time.Millisecond), Windows: states[:i+1]}
		}
		newTat[i] = nt
		states[i] = WindowState{Window: w, Remaining: int(diff / emission), Reset: time.Duration(nt - now)}
	}
	copy(b.tat, newTat)
	return tightest(states)
}

// sweep forgets buckets whose every window has refilled.
func (sh *localShard) sweep(now int64) {
	sh.inserts = 0
	for k, b := range sh.buckets {
		full := true
		for _, t := range b.tat {
			if t > now {
				full = false
				break
			}
		}
		if full {
			delete(sh.buckets, k)
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
