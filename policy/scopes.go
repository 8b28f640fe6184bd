package policy

import (
	"fmt"
	"strings"
)

// ValidScope checks one scope in form: two parts of [a-z0-9_.-]+ joined by
// ':', where the action part may be "*" (patients:* in resource:action,
// *:patients in action:resource).
func ValidScope(form ScopeForm, s string) error {
	first, second, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("%q is not %s", s, form)
	}
	resource, action := first, second
	if form == ScopeActionResource {
		resource, action = second, first
	}
	if !scopePart(resource) {
		return fmt.Errorf("%q: resource %q must be lower-case letters, digits, '_', '.' or '-'", s, resource)
	}
	if action != "*" && !scopePart(action) {
		return fmt.Errorf("%q: action %q must be lower-case letters, digits, '_', '.' or '-', or *", s, action)
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

// split returns a scope's resource and action in p's form.
func (p *Policy) split(s string) (resource, action string) {
	first, second, _ := strings.Cut(s, ":")
	if p.form == ScopeActionResource {
		return second, first
	}
	return first, second
}

// Covers reports whether granted covers needed: equal, or granted is the
// wildcard of needed's resource.
func (p *Policy) Covers(granted, needed string) bool {
	if granted == needed {
		return true
	}
	gr, ga := p.split(granted)
	if ga != "*" {
		return false
	}
	nr, _ := p.split(needed)
	return gr == nr
}

// Missing returns the first needed scope that have does not cover.
func (p *Policy) Missing(have, needed []string) (string, bool) {
	for _, n := range needed {
		covered := false
		for _, h := range have {
			if p.Covers(h, n) {
				covered = true
				break
			}
		}
		if !covered {
			return n, true
		}
	}
	return "", false
}

// Effective is what a key may do under a grant: every scope covered by
// both the key's scopes and the grant's, in its narrower form, deduplicated,
// in key order. patients:* ∩ patients:read = patients:read.
func (p *Policy) Effective(keyScopes, grantScopes []string) []string {
	out := make([]string, 0, len(keyScopes))
	add := func(s string) {
		for _, o := range out {
			if o == s {
				return
			}
		}
		out = append(out, s)
	}
	for _, k := range keyScopes {
		for _, g := range grantScopes {
			switch {
			case p.Covers(g, k):
				add(k)
			case p.Covers(k, g):
				add(g)
			}
		}
	}
	return out
}

// ValidOrg reports whether id can be an organization id: 1 to 128
// characters of [A-Za-z0-9._:-], starting with a letter or digit (UUIDs,
// "org_123"). Anything else — spaces, commas, control bytes, non-ASCII — is
// rejected before it is used.
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
