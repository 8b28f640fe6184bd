package keys

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// Bounds of a key's network restrictions and metadata: both travel with
// every cached record, and metadata with every allowed request.
const (
	MaxCIDRs         = 32
	MaxMetadata      = 16
	MaxMetaKeyLen    = 64
	MaxMetaValueLen  = 256
	metaKeyAlphabet  = "a-z, 0-9, '_' or '-'"
	metaValueAllowed = "printable ASCII"
)

// ParseCIDRs parses networks written as CIDR prefixes, IPv4
// ("10.0.0.0/8") or IPv6 ("2001:db8::/32"), each element of list possibly
// a comma-separated list itself. A bare address is refused (write
// 192.0.2.7/32): a prefix length left out is more often a mistake than a
// single host. Prefixes are normalised (host bits cleared: 10.1.2.3/8 is
// 10.0.0.0/8) and deduplicated, in the order given; at most MaxCIDRs. An
// empty list is nil: the key may be used from anywhere.
func ParseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range list {
		for s := range strings.SplitSeq(item, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				return nil, fmt.Errorf("an empty network in %q", item)
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%q is not a network in CIDR notation (10.0.0.0/8, 2001:db8::/32)", s)
			}
			p = p.Masked()
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	if len(out) > MaxCIDRs {
		return nil, fmt.Errorf("%d networks, at most %d", len(out), MaxCIDRs)
	}
	return out, nil
}

// FormatCIDRs writes prefixes as ParseCIDRs reads them, never nil.
func FormatCIDRs(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// AllowsAddr reports whether a request from addr may use the key: always
// for a key without AllowedCIDRs; otherwise only if addr, valid, is in
// one of them. An IPv4 address written as IPv6 (::ffff:192.0.2.7) is
// compared as IPv4.
func (r *Record) AllowsAddr(addr netip.Addr) bool {
	if len(r.AllowedCIDRs) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range r.AllowedCIDRs {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ValidateMetadata checks a key's metadata: at most MaxMetadata entries;
// each key 1–MaxMetaKeyLen characters of a-z, 0-9, '_' and '-'; each value
// 1–MaxMetaValueLen printable ASCII characters (it may be sent upstream
// in a header).
func ValidateMetadata(m map[string]string) error {
	if len(m) > MaxMetadata {
		return fmt.Errorf("%d entries, at most %d", len(m), MaxMetadata)
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names) // the first bad one, the same every time
	for _, k := range names {
		if err := validMetaKey(k); err != nil {
			return err
		}
		v := m[k]
		if len(v) == 0 || len(v) > MaxMetaValueLen {
			return fmt.Errorf("%s: the value must be 1–%d characters, got %d", k, MaxMetaValueLen, len(v))
		}
		for i := range len(v) {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fmt.Errorf("%s: the value must be %s, got byte %#x at %d", k, metaValueAllowed, v[i], i)
			}
		}
	}
	return nil
}

func validMetaKey(k string) error {
	if len(k) == 0 || len(k) > MaxMetaKeyLen {
		return fmt.Errorf("key %q must be 1–%d characters of %s", k, MaxMetaKeyLen, metaKeyAlphabet)
	}
	for i := range len(k) {
		switch c := k[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return fmt.Errorf("key %q must be 1–%d characters of %s", k, MaxMetaKeyLen, metaKeyAlphabet)
		}
	}
	return nil
}

// ParseMetadata reads metadata written as KEY=VALUE pairs (the command
// line's --meta), each key once, and validates it. No pairs is nil.
func ParseMetadata(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not KEY=VALUE", kv)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("key %q is given twice", k)
		}
		m[k] = v
	}
	if err := ValidateMetadata(m); err != nil {
		return nil, err
	}
	return m, nil
}
