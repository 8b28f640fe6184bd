package keys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
)

// Sizes of the generated parts of a key. 32 base62 characters carry about
// 190 bits; 6 base62 characters hold any CRC32 (62^6 > 2^32).
const (
	RandomLen        = 32
	ChecksumLen      = 6
	DisplayPrefixLen = 15
	// MaxLen bounds a key of any format, imported ones included, so that a
	// huge header is rejected before it is hashed or looked up.
	MaxLen = 256
	// minImportedLen keeps formats without a checksum from accepting
	// trivially short guesses.
	minImportedLen = 16
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Format is one kind of key a deployment accepts: its prefix says its env.
type Format struct {
	Prefix string
	Env    Env
	// Checksum on: generated keys end in a CRC32 checksum that parsing
	// verifies. Off: for keys imported from a system without one.
	Checksum bool
}

// Formats is the set of formats a deployment accepts, matched by prefix.
type Formats struct {
	byLen []Format // longest prefix first, so "sk_live_x_" beats "sk_"
}

// NewFormats validates a set of formats.
func NewFormats(fs []Format) (*Formats, error) {
	if len(fs) == 0 {
		return nil, errors.New("key_formats: at least one key format is required")
	}
	seen := map[string]bool{}
	for i, f := range fs {
		switch {
		case f.Prefix == "":
			return nil, fmt.Errorf("key_formats[%d].prefix: must not be empty", i)
		case len(f.Prefix) >= DisplayPrefixLen:
			return nil, fmt.Errorf("key_formats[%d].prefix: %q is longer than %d characters", i, f.Prefix, DisplayPrefixLen-1)
		case !validPrefix(f.Prefix):
			return nil, fmt.Errorf("key_formats[%d].prefix: %q may hold only letters, digits and _", i, f.Prefix)
		case !f.Env.Valid():
			return nil, fmt.Errorf("key_formats[%d].env: %q is not test or live", i, f.Env)
		case seen[f.Prefix]:
			return nil, fmt.Errorf("key_formats[%d].prefix: %q is listed twice", i, f.Prefix)
		}
		seen[f.Prefix] = true
	}
	sorted := append([]Format(nil), fs...)
	sort.SliceStable(sorted, func(i, j int) bool { return len(sorted[i].Prefix) > len(sorted[j].Prefix) })
	return &Formats{byLen: sorted}, nil
}

// List returns the formats, longest prefix first.
func (fs *Formats) List() []Format { return append([]Format(nil), fs.byLen...) }

// ForEnv returns the first format (in config order of length) for env that
// generates checksummed keys, falling back to any format of env.
func (fs *Formats) ForEnv(env Env) (Format, bool) {
	var fallback *Format
	for i, f := range fs.byLen {
		if f.Env != env {
			continue
		}
		if f.Checksum {
			return f, true
		}
		if fallback == nil {
			fallback = &fs.byLen[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return Format{}, false
}

// ByPrefix returns the format whose prefix is exactly p.
func (fs *Formats) ByPrefix(p string) (Format, bool) {
	for _, f := range fs.byLen {
		if f.Prefix == p {
			return f, true
		}
	}
	return Format{}, false
}

// Parse checks a presented key's shape: a known prefix, the right length and
// alphabet, and its checksum. It touches nothing but the string, so bad keys
// are rejected before any cache or database lookup. Errors wrap ErrInvalid.
func (fs *Formats) Parse(key string) (Format, error) {
	if len(key) > MaxLen {
		return Format{}, fmt.Errorf("%w: longer than %d characters", ErrInvalid, MaxLen)
	}
	for _, f := range fs.byLen {
		if !strings.HasPrefix(key, f.Prefix) {
			continue
		}
		body := key[len(f.Prefix):]
		if !f.Checksum {
			if len(key) < minImportedLen {
				return f, fmt.Errorf("%w: shorter than %d characters", ErrInvalid, minImportedLen)
			}
			if !tokenChars(body) {
				return f, fmt.Errorf("%w: character outside [A-Za-z0-9_-]", ErrInvalid)
			}
			return f, nil
		}
		if len(body) != RandomLen+ChecksumLen {
			return f, fmt.Errorf("%w: wrong length", ErrInvalid)
		}
		if !isBase62(body) {
			return f, fmt.Errorf("%w: character outside base62", ErrInvalid)
		}
		if !checksumMatches(key) {
			return f, fmt.Errorf("%w: checksum mismatch", ErrInvalid)
		}
		return f, nil
	}
	return Format{}, fmt.Errorf("%w: unknown prefix", ErrInvalid)
}

// Generate makes a new key of format f from crypto/rand.
func Generate(f Format) (string, error) {
	var b strings.Builder
	b.Grow(len(f.Prefix) + RandomLen + ChecksumLen)
	b.WriteString(f.Prefix)
	r, err := RandomString(RandomLen)
	if err != nil {
		return "", err
	}
	b.WriteString(r)
	if f.Checksum {
		b.WriteString(checksum(b.String()))
	}
	return b.String(), nil
}

// RandomString returns n base62 characters from crypto/rand, without
// modulo bias (bytes >= 248 are redrawn).
func RandomString(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("keys: reading crypto/rand: %w", err)
		}
		for _, c := range buf {
			if c >= 248 { // 248 = 4*62: keep the draw uniform
				continue
			}
			out = append(out, base62[c%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}

// DisplayPrefix returns the part of a key that may be shown and logged.
func DisplayPrefix(key string) string {
	if len(key) <= DisplayPrefixLen {
		return key[:len(key)/2]
	}
	return key[:DisplayPrefixLen]
}

// Last4 returns a key's last four characters, shown beside its prefix.
func Last4(key string) string {
	if len(key) < 8 {
		return ""
	}
	return key[len(key)-4:]
}

// checksum is the CRC32 (IEEE) of s in fixed-width base62.
func checksum(s string) string {
	var out [ChecksumLen]byte
	putChecksum(&out, s)
	return string(out[:])
}

func putChecksum(out *[ChecksumLen]byte, s string) {
	// Table-driven over the string itself: crc32.ChecksumIEEE would need
	// a []byte copy, which escapes to the heap on every Check.
	v := ^uint32(0)
	for i := 0; i < len(s); i++ {
		v = crc32.IEEETable[byte(v)^s[i]] ^ v>>8
	}
	v = ^v
	for i := ChecksumLen - 1; i >= 0; i-- {
		out[i] = base62[v%62]
		v /= 62
	}
}

// checksumMatches compares key's trailing checksum without allocating.
func checksumMatches(key string) bool {
	split := len(key) - ChecksumLen
	var want [ChecksumLen]byte
	putChecksum(&want, key[:split])
	return string(want[:]) == key[split:]
}

func isBase62(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}

func tokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validPrefix(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_') {
			return false
		}
	}
	return true
}

// NewID returns an identifier with a readable kind prefix ("key_…").
func NewID(kind string) (string, error) {
	r, err := RandomString(20)
	if err != nil {
		return "", err
	}
	return kind + "_" + r, nil
}
