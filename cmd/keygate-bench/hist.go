package main

import (
	"math"
	"math/bits"
	"time"
)

// hist is a log-linear latency histogram in nanoseconds, in the spirit of
// HdrHistogram: values below 2^subBits are exact, larger ones keep their
// top subBits+1 bits, so any value is stored within 1/2^subBits (< 0.8%)
// of its true value. Recording is a few instructions and never allocates;
// each worker owns one and they are merged after the run.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
	max    uint64
}

const (
	subBits     = 7
	subCount    = 1 << subBits              // 128 linear sub-buckets per power of two
	histBuckets = (64-subBits)*subCount + 1 // enough for any uint64
)

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)*subCount + int(v>>uint(shift)) - subCount
}

// valueOf is the midpoint of bucket i.
func valueOf(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	mant := uint64(i%subCount + subCount)
	lo := mant << uint(shift)
	return lo + (uint64(1)<<uint(shift))/2
}

func (h *hist) record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketOf(v)]++
	h.n++
	if v > h.max {
		h.max = v
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the q-quantile (0 < q ≤ 1): the smallest recorded value
// with at least q of the samples at or below it.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := valueOf(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
