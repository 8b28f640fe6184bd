package cache

import "sync/atomic"

// budget paces the database look-ups made for cache misses: perSecond
// look-ups a second, and up to a second's worth at once after a quiet
// spell, so in any span of t seconds at most perSecond × (t + 1). It is
// GCRA kept in one atomic (the theoretical arrival time of the next
// look-up), spent by compare-and-swap: no lock, and only misses touch it.
type budget struct {
	interval  int64 // nanoseconds per look-up
	tolerance int64 // how far ahead of now the arrival time may run
	tat       atomic.Int64
}

func newBudget(perSecond int64) *budget {
	interval := max(int64(1e9)/perSecond, 1)
	return &budget{interval: interval, tolerance: (perSecond - 1) * interval}
}

// take spends one look-up at now (unix nanoseconds) if the budget has one.
func (b *budget) take(now int64) bool {
	for {
		old := b.tat.Load()
		tat := max(old, now)
		if tat-now > b.tolerance {
			return false
		}
		if b.tat.CompareAndSwap(old, tat+b.interval) {
			return true
		}
	}
}

// spent reports whether take would fail at now, without spending: misses
// over the budget are answered before any other work.
func (b *budget) spent(now int64) bool {
	return max(b.tat.Load(), now)-now > b.tolerance
}
