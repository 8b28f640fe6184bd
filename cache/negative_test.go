package cache

import (
	"crypto/rand"
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"github.com/keygate/keygate/keys"
)

func randomHash(t testing.TB) keys.Hash {
	var h keys.Hash
	if _, err := rand.Read(h[:]); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestNegativeSlotSize(t *testing.T) {
	if got := unsafe.Sizeof(negSlot{}); got != negSlotBytes {
		t.Fatalf("a remembered unknown key takes %d bytes, the docs say %d", got, negSlotBytes)
	}
}

func TestNegativeCapacity(t *testing.T) {
	for _, c := range []struct {
		name         string
		size         int64
		shards, want int64
	}{
		{"one", 1, 1, 8},
		{"one set", 8, 1, 8},
		{"two sets", 9, 1, 16},
		{"small", 100, 8, 128},
		{"shards full", 512, 64, 512},
		{"default", DefaultNegativeMax, 64, 100_352},
		{"million", 1_000_000, 64, 1_000_448},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := newNegative(c.size, int64(time.Minute))
			if int64(len(n.shards)) != c.shards || n.capacity() != c.want {
				t.Fatalf("size %d: %d shards, capacity %d; want %d, %d", c.size, len(n.shards), n.capacity(), c.shards, c.want)
			}
			if n.capacity() < c.size {
				t.Fatalf("capacity %d below the configured %d", n.capacity(), c.size)
			}
		})
	}
}

func TestNegativeRemembersForTTL(t *testing.T) {
	n := newNegative(1000, int64(time.Minute))
	h, other := randomHash(t), randomHash(t)
	const now = int64(1e18)
	n.add(&h, now)
	for _, c := range []struct {
		name string
		h    keys.Hash
		at   int64
		want bool
	}{
		{"at once", h, now, true},
		{"before the TTL", h, now + int64(time.Minute) - 1, true},
		{"another hash", other, now, false},
		{"at the TTL", h, now + int64(time.Minute), false},
		{"expired entries stay gone", h, now, false},
	} {
		if got := n.has(&c.h, c.at); got != c.want {
			t.Errorf("%s: has = %v, want %v", c.name, got, c.want)
		}
	}
	n.add(&h, now)
	n.remove(&h)
	if n.has(&h, now) || n.len(now) != 0 {
		t.Fatal("a removed hash is still remembered")
	}
}

// TestNegativeIsBounded: however many hashes arrive, the set holds at
// most its capacity, allocates nothing beyond it, and the newest are kept.
func TestNegativeIsBounded(t *testing.T) {
	n := newNegative(1000, int64(time.Minute))
	const now = int64(1e18)
	var last keys.Hash
	for i := range 50 * n.capacity() {
		last = randomHash(t)
		n.add(&last, now+i)
	}
	if got := n.len(now); int64(got) > n.capacity() || got < int(n.capacity())*9/10 {
		t.Fatalf("%d remembered, capacity %d", got, n.capacity())
	}
	slots := 0
	for i := range n.shards {
		slots += cap(n.shards[i].slots)
	}
	if int64(slots) != n.capacity() {
		t.Fatalf("%d slots allocated for a capacity of %d", slots, n.capacity())
	}
	if !n.has(&last, now) {
		t.Fatal("the newest hash was not kept")
	}
}

// TestNegativeReplacesSoonestToExpire: in a full set, a new hash takes
// the slot of the one that expires first.
func TestNegativeReplacesSoonestToExpire(t *testing.T) {
	n := newNegative(negWays, int64(time.Minute)) // one shard, one set
	const now = int64(1e18)
	hs := make([]keys.Hash, negWays+1)
	for i := range hs {
		binary.LittleEndian.PutUint64(hs[i][24:], uint64(i)+1)
	}
	for i := range negWays {
		n.add(&hs[i], now+int64(i))
	}
	n.add(&hs[0], now+100) // refreshed: now the last to expire
	n.add(&hs[negWays], now+200)
	if n.has(&hs[1], now) {
		t.Fatal("the entry closest to expiry was kept")
	}
	for _, i := range []int{0, 2, negWays} {
		if !n.has(&hs[i], now) {
			t.Fatalf("entry %d was pushed out", i)
		}
	}
}
