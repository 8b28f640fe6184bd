package cache

import (
	"encoding/binary"
	"sync"

	"github.com/keygate/keygate/keys"
)

// negWays is how many remembered hashes share a set: a new one replaces
// an expired slot of its set, else the one closest to expiry.
const negWays = 8

// negSlotBytes is the memory one remembered unknown key costs: its hash
// and its expiry, nothing else (see negSlot).
const negSlotBytes = 40

// negative remembers hashes the key database said no key has, until
// their TTL, in a fixed number of slots of its own: however many unknown
// keys arrive, they replace each other and never a real key's record,
// and they cost at most capacity × negSlotBytes of memory. Shards are
// allocated at their first use, so a replica that sees no unknown keys
// pays nothing. Each shard has its own lock and only misses of the
// positive cache reach it.
type negative struct {
	shards []negShard
	mask   uint64 // len(shards)-1
	sets   uint64 // sets per shard
	ttl    int64  // nanoseconds
}

type negShard struct {
	mu    sync.Mutex
	slots []negSlot // sets × negWays; nil until the first add
	_     [32]byte  // keeps neighbouring shards' locks off one cache line
}

// negSlot is one remembered hash; exp 0 marks it free.
type negSlot struct {
	hash keys.Hash
	exp  int64 // unix nanoseconds
}

// newNegative sizes the set for at least size hashes: shards are a power
// of two up to 64, and capacity is size rounded up to a whole number of
// sets in every shard.
func newNegative(size, ttl int64) *negative {
	shards := int64(64)
	for shards > 1 && shards*negWays > size {
		shards /= 2
	}
	sets := (size + shards*negWays - 1) / (shards * negWays)
	return &negative{shards: make([]negShard, shards), mask: uint64(shards - 1), sets: uint64(sets), ttl: ttl}
}

// capacity is how many hashes the set holds at most.
func (n *negative) capacity() int64 { return int64(len(n.shards)) * int64(n.sets) * negWays }

// The first 8 bytes of a hash index the positive cache; the negative set
// takes its shard and set from the next 16, so the two spread apart.
func (n *negative) locate(h *keys.Hash) (*negShard, uint64) {
	s := &n.shards[binary.LittleEndian.Uint64(h[8:16])&n.mask]
	return s, binary.LittleEndian.Uint64(h[16:24]) % n.sets * negWays
}

// has reports whether h is remembered as unknown at now.
func (n *negative) has(h *keys.Hash, now int64) bool {
	s, base := n.locate(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots == nil {
		return false
	}
	set := s.slots[base : base+negWays]
	for i := range set {
		if set[i].exp != 0 && set[i].hash == *h {
			if set[i].exp > now {
				return true
			}
			set[i] = negSlot{}
			return false
		}
	}
	return false
}

// add remembers h as unknown from now for the TTL.
func (n *negative) add(h *keys.Hash, now int64) {
	s, base := n.locate(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots == nil {
		s.slots = make([]negSlot, n.sets*negWays)
	}
	set := s.slots[base : base+negWays]
	victim := 0
	for i := range set {
		if set[i].exp != 0 && set[i].hash == *h {
			victim = i
			break
		}
		if set[i].exp < set[victim].exp {
			victim = i // free slots (exp 0) and then the soonest to expire
		}
	}
	set[victim] = negSlot{hash: *h, exp: now + n.ttl}
}

// remove forgets h: a key with this hash exists now.
func (n *negative) remove(h *keys.Hash) {
	s, base := n.locate(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots == nil {
		return
	}
	set := s.slots[base : base+negWays]
	for i := range set {
		if set[i].exp != 0 && set[i].hash == *h {
			set[i] = negSlot{}
		}
	}
}

// len counts the hashes remembered at now. It reads every slot: for
// metrics, not for Check.
func (n *negative) len(now int64) int {
	total := 0
	for i := range n.shards {
		s := &n.shards[i]
		s.mu.Lock()
		for j := range s.slots {
			if s.slots[j].exp > now {
				total++
			}
		}
		s.mu.Unlock()
	}
	return total
}
