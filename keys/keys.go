// Package keys defines Keygate's API keys: their formats, how they are
// generated, parsed and hashed, and the records and grants stored for them.
// It does no I/O; every other package speaks in its types.
package keys

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Env is the environment a key belongs to; its format's prefix says which.
type Env string

// The two environments the seeds' APIs know.
const (
	EnvTest Env = "test"
	EnvLive Env = "live"
)

// Valid reports whether e is one of the known environments.
func (e Env) Valid() bool { return e == EnvTest || e == EnvLive }

// Hash is the SHA-256 (or HMAC-SHA256 with a pepper) of a whole key: the
// only form in which a key is ever stored or used as a cache key.
type Hash [sha256.Size]byte

// String returns the hash in lower-case hex, as stored and imported.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// ParseHash reads a hash written as 64 hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*len(h) {
		return h, fmt.Errorf("keys: hash must be %d hex digits, got %d characters", 2*len(h), len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("keys: hash is not hex: %w", err)
	}
	return h, nil
}

// Hasher turns keys into Hashes. With a pepper it computes HMAC-SHA256, so a
// stolen database alone cannot be used to test guesses offline.
type Hasher struct {
	pepper []byte
	pool   *sync.Pool // of *macBuf, only with a pepper
}

// macBuf is an HMAC with room for a key beside it: the key is copied
// there, not converted to a []byte, which would be an allocation per call
// (a slice passed to an interface method escapes).
type macBuf struct {
	mac hash.Hash
	buf [MaxLen]byte
	sum Hash // likewise for the result
}

// NewHasher returns a Hasher; an empty pepper means plain SHA-256.
func NewHasher(pepper []byte) *Hasher {
	h := &Hasher{pepper: append([]byte(nil), pepper...)}
	if len(pepper) > 0 {
		h.pool = &sync.Pool{New: func() any { return &macBuf{mac: hmac.New(sha256.New, h.pepper)} }}
	}
	return h
}

// Peppered reports whether the Hasher uses HMAC with a pepper.
func (h *Hasher) Peppered() bool { return h != nil && len(h.pepper) > 0 }

// Sum hashes a whole key.
func (h *Hasher) Sum(key string) Hash {
	if !h.Peppered() {
		if len(key) <= MaxLen {
			// A stack buffer: converting the string would escape to the heap.
			var buf [MaxLen]byte
			return sha256.Sum256(buf[:copy(buf[:], key)])
		}
		return sha256.Sum256([]byte(key))
	}
	m := h.pool.Get().(*macBuf)
	m.mac.Reset()
	if len(key) <= MaxLen {
		m.mac.Write(m.buf[:copy(m.buf[:], key)])
	} else {
		m.mac.Write([]byte(key))
	}
	m.mac.Sum(m.sum[:0])
	out := m.sum
	h.pool.Put(m)
	return out
}

// Status is what a record says about a key at a given time.
type Status int

// A key is active until it is revoked or its expiry passes.
const (
	StatusActive Status = iota
	StatusExpired
	StatusRevoked
)

func (s Status) String() string {
	switch s {
	case StatusActive:
		return "active"
	case StatusExpired:
		return "expired"
	case StatusRevoked:
		return "revoked"
	}
	return "unknown"
}

// Record is what Keygate stores about a key. It never holds the key itself.
type Record struct {
	ID     string // "key_" + random, stable for the key's life
	Hash   Hash
	Prefix string // display prefix: the key's first DisplayPrefixLen characters
	Last4  string
	Tenant string
	Name   string
	Env    Env
	Scopes []string
	Plan   string
	// Lineage is shared by a key and every key rolled from it, so that
	// they share rate-limit buckets. A new key's lineage is its own ID.
	Lineage    string
	CreatedAt  time.Time
	ExpiresAt  time.Time // zero: never expires
	RevokedAt  time.Time // zero: not revoked
	LastUsedAt time.Time // zero: never used
	// RolledAt and ReplacedBy are set on a key that a roll replaced; it
	// stays valid until ExpiresAt (the end of the grace period).
	RolledAt   time.Time
	ReplacedBy string
	// Imported is set for keys whose hash came from another system.
	Imported bool
	// AllowedCIDRs, if any, are the only networks the key may be used
	// from (ParseCIDRs' form: normalised, parsed once when the record is
	// read). Nil: anywhere.
	AllowedCIDRs []netip.Prefix
	// Metadata is stored with the key and forwarded upstream as the
	// configured headers (ValidateMetadata's rules). Nil: none.
	Metadata map[string]string
	// Version is the change-feed version of the last write to the record.
	Version int64
}

// Status says whether the key may be used at now. Revocation wins over expiry.
func (r *Record) Status(now time.Time) Status {
	switch {
	case !r.RevokedAt.IsZero() && !now.Before(r.RevokedAt):
		return StatusRevoked
	case !r.ExpiresAt.IsZero() && !now.Before(r.ExpiresAt):
		return StatusExpired
	}
	return StatusActive
}

// LogValue keeps records out of logs but for what identifies them.
func (r Record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("prefix", r.Prefix), slog.String("tenant", r.Tenant))
}

// Grant says that tenant Tenant's keys may act in organization Org, with at
// most Scopes (effective scopes are the key's scopes intersected with these).
type Grant struct {
	Tenant    string
	Org       string
	Scopes    []string
	CreatedAt time.Time
	UpdatedAt time.Time
	RevokedAt time.Time // zero: in force
	Version   int64
}

// Active reports whether the grant is in force.
func (g *Grant) Active() bool { return g.RevokedAt.IsZero() }

// ErrInvalid is wrapped by every error that rejects a key's shape, so callers
// can tell a bad credential from a technical failure.
var ErrInvalid = errors.New("invalid api key")
