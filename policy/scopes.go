package policy

import (
	"fmt"
	"strings"
)

// ValidScope reports why s is not a scope in form, or nil: two parts of
// 1 to 64 characters of [a-z0-9_.-] joined by one ':', where the action part
// may be the wildcard "*" (patients:* in resource:action, *:patients in
// action:resource). There is no wildcard resource, so no "*:*": a key is
// given each resource it may touch. The zero form means resource:action.
// Config loaders and the key store use it so that a scope Keygate could
// never match is refused when it is written, not ignored when it is read.
func ValidScope(form ScopeForm, s string) error {
	switch form {
	case "":
		form = ScopeResourceAction
	case ScopeResourceAction, ScopeActionResource:
	default:
		return fmt.Errorf("%q: unknown scope form %q", s, form)
	}
	first, second, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("%q is not %s", s, form)
	}
	resource, action := first, second
	if form == ScopeActionResource {
		resource, action = second, first
	}
	if !scopePart(resource) {
		return fmt.Errorf("%q is not %s: resource %q must be 1 to 64 lower-case letters, digits, '_', '.' or '-'", s, form, resource)
	}
	if action != "*" && !scopePart(action) {
		return fmt.Errorf("%q is not %s: action %q must be 1 to 64 lower-case letters, digits, '_', '.' or '-', or *", s, form, action)
	}
	return nil
}

func scopePart(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Covers reports whether the granted scope covers the needed one: they are
// equal, or granted is the wildcard of needed's resource (patients:* covers
// patients:read; in action:resource, *:patients covers read:patients). A
// specific scope never covers a wildcard one.
func (p *Policy) Covers(granted, needed string) bool {
	if granted == needed {
		return true
	}
	// Without splitting: granted must be the form's wildcard, its only
	// colon next to the '*', and needed must share its resource, cut at
	// needed's first colon as split would.
	n := len(granted)
	if n < 3 || strings.IndexByte(granted, ':') != strings.LastIndexByte(granted, ':') {
		return false
	}
	if p.form == ScopeActionResource {
		// "*:patients" covers "read:patients".
		return granted[0] == '*' && granted[1] == ':' &&
			strings.HasSuffix(needed, granted[1:]) && strings.IndexByte(needed, ':') == len(needed)-(n-1)
	}
	// "patients:*" covers "patients:read".
	return granted[n-1] == '*' && granted[n-2] == ':' && strings.HasPrefix(needed, granted[:n-1])
}

// Missing returns the first needed scope that no scope in have covers, and
// true; or "", false when have covers them all. The caller names the
// scope in its insufficient_scope message. It does not allocate.
func (p *Policy) Missing(have, needed []string) (string, bool) {
	for _, n := range needed {
		if !p.coveredBy(have, n) {
			return n, true
		}
	}
	return "", false
}

func (p *Policy) coveredBy(have []string, s string) bool {
	for _, h := range have {
		if p.Covers(h, s) {
			return true
		}
	}
	return false
}

// Effective returns what a key may do in another organization under a
// grant: key scopes ∩ grant scopes with wildcard semantics, each in its
// narrower form (key patients:* ∩ grant patients:read = patients:read, and
// the other way round; patients:* ∩ patients:* = patients:*), deduplicated,
// in key order (a key wildcard expands in grant order). The result is never
// nil. It allocates one slice; AppendEffective reuses the caller's.
func (p *Policy) Effective(keyScopes, grantScopes []string) []string {
	return p.AppendEffective(make([]string, 0, len(keyScopes)), keyScopes, grantScopes)
}

// AppendEffective appends Effective(keyScopes, grantScopes) to dst and
// returns the extended slice, so that a hot caller can reuse a buffer.
// Entries already in dst are left alone and not added again.
func (p *Policy) AppendEffective(dst, keyScopes, grantScopes []string) []string {
	for _, k := range keyScopes {
		for _, g := range grantScopes {
			switch {
			case p.Covers(g, k):
				dst = appendNew(dst, k)
			case p.Covers(k, g):
				dst = appendNew(dst, g)
			}
		}
	}
	return dst
}

// appendNew appends s to dst unless it is there already. Scope lists are
// short, so a linear scan beats a map.
func appendNew(dst []string, s string) []string {
	for _, d := range dst {
		if d == s {
			return dst
		}
	}
	return append(dst, s)
}

// ValidOrg reports whether id can be an organization id, the value of the
// organization header: 1 to 128 characters of [A-Za-z0-9._:-], starting
// with a letter or digit (UUIDs, "org_123", "tenant.eu:org-1"). Anything
// else — spaces, commas (two joined values), control bytes, non-ASCII — is
// rejected (invalid_organization) before it reaches a log line, a header
// or the database. It does not allocate.
func ValidOrg(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != ':' && c != '-') {
			return false
		}
	}
	return true
}
