package limits

import (
	"hash/maphash"
	"sync"
)

// leases hold requests taken from Redis ahead of need. A bucket far from
// its limit takes up to LeaseMax requests in one round trip and hands them
// out locally; near its limit it goes back to one request per round trip.
// A lease that expires unused loses its requests, which can only make the
// limit stricter, never looser.
type leases struct {
	seed   maphash.Seed
	shards [64]leaseShard
}

type leaseShard struct {
	mu sync.Mutex
	m  map[string]*lease
}

type lease struct {
	plan    *plan
	left    int   // requests still to hand out
	expires int64 // unix nanos
	// base is each window's remaining count after the batch was taken;
	// a request handed out locally reports base + left.
	base    []WindowState
	lastMin int // fewest remaining in any window at the last Redis answer
}

const maxLeases = 100_000 // per shard count is this / 64; expired ones are swept

func (ls *leases) init() {
	ls.seed = maphash.MakeSeed()
	for i := range ls.shards {
		ls.shards[i].m = map[string]*lease{}
	}
}

func (ls *leases) shard(bucket string) *leaseShard {
	return &ls.shards[maphash.String(ls.seed, bucket)%uint64(len(ls.shards))]
}

// take hands out one leased request, if bucket has one; if not, it says
// how many requests the next round trip should take (see size).
func (ls *leases) take(bucket string, p *plan, now int64, max int) (Result, bool, int) {
	sh := ls.shard(bucket)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	le := sh.m[bucket]
	if le == nil || le.plan != p || le.left == 0 || now >= le.expires {
		return Result{}, false, le.size(p, max, now)
	}
	le.left--
	states := make([]WindowState, len(le.base))
	for i, b := range le.base {
		states[i] = WindowState{Window: b.Window, Remaining: b.Remaining + le.left, Reset: b.Reset}
	}
	return tightest(states), true, 0
}

// size is how many requests to take in the next round trip: one when
// nothing is known, when the bucket was last asked for longer ago than a
// lease lives (a lease taken now would most likely expire unused, its
// requests lost: a key used every few seconds would see its remaining
// count drop by a batch a request), or when the bucket is near its limit;
// more the further away it is, at most max.
func (le *lease) size(p *plan, max int, now int64) int {
	if max <= 1 || le == nil || le.plan != p || now >= le.expires {
		return 1
	}
	// Only far from the limit: every bucket's last leaseFloor requests
	// are taken one at a time, exactly. Above that, take at most a
	// sixty-fourth of what is left, so leases left unused on other
	// replicas cost the bucket little.
	if le.lastMin < leaseFloor {
		return 1
	}
	return min(max, le.lastMin/64)
}

// leaseFloor is how many remaining requests a bucket needs before leasing.
const leaseFloor = 1024

// put records the answer of a round trip that took n requests.
func (ls *leases) put(bucket string, p *plan, res Result, n int, now, expires int64) {
	sh := ls.shard(bucket)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	le := sh.m[bucket]
	if le == nil {
		if len(sh.m) >= maxLeases/len(ls.shards) {
			sh.sweep(now)
		}
		le = &lease{}
		sh.m[bucket] = le
	}
	if le.plan != p || le.expires <= now {
		le.left = 0 // another plan's, or expired: its requests are lost
	}
	le.plan, le.lastMin, le.expires = p, res.Remaining, expires
	if res.Allowed && n > 1 {
		// Concurrent callers may each have taken a batch: keep them all.
		le.left += n - 1
		le.base = append(le.base[:0], res.Windows...)
	}
}

// sweep drops leases that have run out or expired; at most one TTL old
// entries remain, so memory stays bounded by the busy buckets.
func (sh *leaseShard) sweep(now int64) {
	for k, le := range sh.m {
		if le.left == 0 || le.expires <= now {
			delete(sh.m, k)
		}
	}
}
