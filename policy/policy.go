// Package policy decides which scopes a request needs and what a key may
// do: route rules matched by method and path, Envoy's per-route context
// extensions, scope coverage with resource wildcards, and the effective
// scopes of a key acting under an organization grant. It is pure: no I/O,
// and matching an allowed request does not allocate.
package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// ScopeForm is how a deployment writes scopes.
type ScopeForm string

// The two forms the seeds use.
const (
	// ScopeResourceAction: patients:read; wildcard patients:*.
	ScopeResourceAction ScopeForm = "resource:action"
	// ScopeActionResource: read:patients (Max AI); wildcard *:patients.
	ScopeActionResource ScopeForm = "action:resource"
)

// Context extension keys Envoy may send per route.
const (
	ExtScopes      = "keygate.scopes"
	ExtOrgRequired = "keygate.org_required"
)

// Route is one rule of the config's routes list.
type Route struct {
	Methods     []string `yaml:"methods"`      // empty: any method
	Path        string   `yaml:"path"`         // `*` one segment, `**` the rest
	Scopes      []string `yaml:"scopes"`       // all required
	OrgRequired *bool    `yaml:"org_required"` // nil: the global default
}

// Config is the route policy.
type Config struct {
	Routes       []Route
	DefaultRoute *Route // used when no rule matches; its Path and Methods are ignored
	OrgRequired  bool   // global default for the organization header
	ScopeForm    ScopeForm
}

// Match is the route a request resolved to.
type Match struct {
	Found       bool     // false: route_not_found
	Route       string   // for logs: the rule's path, "default" or "context_extensions"
	Scopes      []string // required scopes; shared, do not modify
	OrgRequired bool
}

type segKind uint8

const (
	segLiteral segKind = iota
	segOne             // *
	segRest            // **
)

type segment struct {
	kind segKind
	lit  string
}

type rule struct {
	methods []string // upper case; empty: any
	segs    []segment
	match   Match
}

// Policy is a compiled route policy. It is safe for concurrent use.
type Policy struct {
	rules []rule
	def   *Match
	form  ScopeForm
	org   bool
	// extScopes caches parsed keygate.scopes values: they come from the
	// proxy's route config, a small fixed set, but arrive on every request.
	extScopes sync.Map // string → []string
	extCached atomic.Int32
}

// maxExtCache bounds extScopes, in case a proxy sends ever-new values.
const maxExtCache = 4096

// New compiles and validates cfg; errors name the field, e.g. routes[2].path.
func New(cfg Config) (*Policy, error) {
	if cfg.ScopeForm == "" {
		cfg.ScopeForm = ScopeResourceAction
	}
	if cfg.ScopeForm != ScopeResourceAction && cfg.ScopeForm != ScopeActionResource {
		return nil, fmt.Errorf("scopes.form: %q is not resource:action or action:resource", cfg.ScopeForm)
	}
	p := &Policy{form: cfg.ScopeForm, org: cfg.OrgRequired}
	for i, r := range cfg.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		segs, err := compilePath(r.Path)
		if err != nil {
			return nil, fmt.Errorf("%s.path: %w", field, err)
		}
		ru := rule{segs: segs}
		for j, m := range r.Methods {
			if !isToken(m) {
				return nil, fmt.Errorf("%s.methods[%d]: %q is not an HTTP method", field, j, m)
			}
			ru.methods = append(ru.methods, strings.ToUpper(m))
		}
		if err := p.validScopes(field, r.Scopes); err != nil {
			return nil, err
		}
		ru.match = Match{Found: true, Route: r.Path, Scopes: clean(r.Scopes), OrgRequired: p.orgRequired(r.OrgRequired)}
		p.rules = append(p.rules, ru)
	}
	if d := cfg.DefaultRoute; d != nil {
		if err := p.validScopes("default_route", d.Scopes); err != nil {
			return nil, err
		}
		p.def = &Match{Found: true, Route: "default", Scopes: clean(d.Scopes), OrgRequired: p.orgRequired(d.OrgRequired)}
	}
	return p, nil
}

func (p *Policy) orgRequired(b *bool) bool {
	if b != nil {
		return *b
	}
	return p.org
}

func (p *Policy) validScopes(field string, scopes []string) error {
	for j, s := range scopes {
		if err := ValidScope(p.form, s); err != nil {
			return fmt.Errorf("%s.scopes[%d]: %w", field, j, err)
		}
	}
	return nil
}

func clean(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// compilePath splits a pattern into segments. Paths are matched raw, as
// Envoy sends them, never percent-decoded: decoding would let "%2F" smuggle
// a segment boundary past a rule.
func compilePath(pat string) ([]segment, error) {
	if !strings.HasPrefix(pat, "/") {
		return nil, fmt.Errorf("%q must start with /", pat)
	}
	if strings.ContainsAny(pat, "?#") {
		return nil, fmt.Errorf("%q must not hold a query or fragment", pat)
	}
	if pat == "/" {
		return nil, nil
	}
	parts := strings.Split(strings.TrimSuffix(pat[1:], "/"), "/")
	segs := make([]segment, 0, len(parts))
	for i, part := range parts {
		switch {
		case part == "":
			return nil, fmt.Errorf("%q has an empty segment", pat)
		case part == "**":
			if i != len(parts)-1 {
				return nil, fmt.Errorf("%q: ** may only be the last segment", pat)
			}
			segs = append(segs, segment{kind: segRest})
		case part == "*":
			segs = append(segs, segment{kind: segOne})
		case strings.Contains(part, "*"):
			return nil, fmt.Errorf("%q: * must be a whole segment", pat)
		case part == "." || part == "..":
			return nil, fmt.Errorf("%q: dot segments are not allowed", pat)
		default:
			segs = append(segs, segment{kind: segLiteral, lit: part})
		}
	}
	return segs, nil
}

// ErrBadExtension: a context extension from the proxy has a bad value. It
// comes from the proxy's configuration, not from the client.
var ErrBadExtension = errors.New("bad context extension")

// Match resolves the route of a request. A request carrying the
// keygate.scopes context extension needs no rule; keygate.org_required
// overrides the rule's setting. The query string and fragment are ignored.
// A path with dot segments ("/a/../b") matches no rule: Envoy normalizes
// paths before ext_authz, so such a path means that normalization is off,
// and guessing what the upstream will make of it is unsafe.
func (p *Policy) Match(method, path string, ext map[string]string) (Match, error) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	m, found := p.matchRules(method, path)
	if len(ext) == 0 {
		return m, nil
	}
	if v, ok := ext[ExtScopes]; ok {
		scopes, err := p.parseScopes(v)
		if err != nil {
			return Match{}, err
		}
		org := p.org
		if found {
			org = m.OrgRequired
		}
		m = Match{Found: true, Route: "context_extensions", Scopes: scopes, OrgRequired: org}
	}
	if v, ok := ext[ExtOrgRequired]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return Match{}, fmt.Errorf("%w: %s=%q is not true or false", ErrBadExtension, ExtOrgRequired, v)
		}
		m.OrgRequired = b
	}
	return m, nil
}

func (p *Policy) parseScopes(v string) ([]string, error) {
	if s, ok := p.extScopes.Load(v); ok {
		return s.([]string), nil
	}
	out, err := p.parseScopesUncached(v)
	if err == nil && p.extCached.Load() < maxExtCache {
		if _, loaded := p.extScopes.LoadOrStore(v, out); !loaded {
			p.extCached.Add(1)
		}
	}
	return out, err
}

func (p *Policy) parseScopesUncached(v string) ([]string, error) {
	out := []string{}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if err := ValidScope(p.form, s); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadExtension, ExtScopes, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func (p *Policy) matchRules(method, path string) (Match, bool) {
	if !hasDotSegment(path) {
		for i := range p.rules {
			r := &p.rules[i]
			if r.allows(method) && matchPath(r.segs, path) {
				return r.match, true
			}
		}
	}
	if p.def != nil {
		return *p.def, true
	}
	return Match{}, false
}

func (r *rule) allows(method string) bool {
	if len(r.methods) == 0 {
		return true
	}
	for _, m := range r.methods {
		if strings.EqualFold(m, method) {
			return true
		}
	}
	return false
}

// matchPath walks the path once, segment by segment: linear in its length
// whatever the pattern.
func matchPath(segs []segment, path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	rest := path[1:]
	for _, s := range segs {
		if s.kind == segRest {
			return true // zero or more segments: "/a" matches "/a/**"
		}
		if rest == "" {
			return false
		}
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:] // a trailing slash leaves rest empty
		} else {
			seg, rest = rest, ""
		}
		if seg == "" {
			return false // "//" never matches a segment
		}
		if s.kind == segLiteral && seg != s.lit {
			return false
		}
	}
	return rest == ""
}

func hasDotSegment(path string) bool {
	for path != "" {
		var seg string
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			seg, path = path, ""
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// OrgRequired is the global default for the organization header, for
// routes Keygate answers itself.
func (p *Policy) OrgRequired() bool { return p.org }
