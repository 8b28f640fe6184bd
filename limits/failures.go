package limits

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/ristretto/v2"
)

// Failures limits failed authentications per client address, in process:
// brute force against the key space costs the attacker, not the key
// database. Memory is bounded: refilled addresses are forgotten, and the
// block list is a fixed-size cache.
type Failures struct {
	local   *local
	plan    *plan
	now     func() time.Time
	blocked *ristretto.Cache[string, int64] // address → blocked until (unix nanos)
}

// NewFailures allows w.Limit failures per w.Period per address (a burst of
// w.Limit, then one per Period/Limit).
func NewFailures(w Window, now func() time.Time) (*Failures, error) {
	if w.Limit < 1 || w.Period <= 0 || int64(w.Limit) > int64(w.Period) {
		return nil, errors.New("auth.failures: limit must be at least 1 and period positive, at most one failure per nanosecond")
	}
	if now == nil {
		now = time.Now
	}
	blocked, err := ristretto.NewCache(&ristretto.Config[string, int64]{
		NumCounters: 1_000_000, MaxCost: 100_000, BufferItems: 64, IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("auth.failures: %w", err)
	}
	return &Failures{local: newLocal(now), plan: &plan{windows: []Window{w}}, now: now, blocked: blocked}, nil
}

// Blocked reports whether addr has failed too often, and for how long
// more; it costs a memory lookup.
func (f *Failures) Blocked(addr string) (time.Duration, bool) {
	until, ok := f.blocked.Get(addr)
	if !ok {
		return 0, false
	}
	left := time.Duration(until - f.now().UnixNano())
	return left, left > 0
}

// Fail records one failed authentication from addr and reports whether
// addr is now blocked.
func (f *Failures) Fail(addr string) (time.Duration, bool) {
	r := f.local.allow(addr, f.plan)
	retry := r.RetryAfter
	if r.Allowed {
		if r.Remaining > 0 {
			return 0, false
		}
		// The budget is spent: block until one more failure would be
		// allowed, so the next attempt is refused before any lookup.
		w := f.plan.windows[0]
		retry = r.Reset + w.Period/time.Duration(w.Limit) - w.Period
	}
	retry = max(retry, time.Millisecond)
	f.blocked.SetWithTTL(addr, f.now().Add(retry).UnixNano(), 1, retry)
	f.blocked.Wait() // the next request must see the block
	return retry, true
}

// Close releases the block list.
func (f *Failures) Close() { f.blocked.Close() }
