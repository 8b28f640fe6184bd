// Package policy decides which scopes a request needs and what a key may
// do: route rules matched by method and path, Envoy's per-route context
// extensions, scope coverage with resource wildcards, and the effective
// scopes of a key acting under an organization grant. It is pure: no I/O,
// and matching an allowed request does not allocate.
package policy

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// ScopeForm is how a deployment writes scopes, so that Keygate can speak
// each API's own dialect ("patients:read" or "read:patients").
type ScopeForm string

// The two scope forms the seeds use. The zero ScopeForm means
// ScopeResourceAction.
const (
	// ScopeResourceAction is "resource:action", e.g. patients:read; its
	// wildcard is patients:*. The default.
	ScopeResourceAction ScopeForm = "resource:action"
	// ScopeActionResource is "action:resource", e.g. read:patients (Max
	// AI); its wildcard is *:patients.
	ScopeActionResource ScopeForm = "action:resource"
)

// Context-extension keys Envoy may set per route (typed_per_filter_config
// of ext_authz), so that a route's policy can live in the proxy's config.
const (
	// ExtScopes is "keygate.scopes": the comma-joined scopes the route
	// needs. A request carrying it needs no rule.
	ExtScopes = "keygate.scopes"
	// ExtOrgRequired is "keygate.org_required": "true" or "false",
	// overriding the rule and the global default.
	ExtOrgRequired = "keygate.org_required"
)

// Route is one rule of the config's routes list: which requests it covers
// and what they need.
type Route struct {
	// Methods the rule covers, matched case-insensitively; empty: any.
	Methods []string
	// Path is the pattern, e.g. "/api/v1/patients/**": "*" is one segment,
	// "**" (last segment only) zero or more segments, anything else a
	// literal segment compared byte for byte.
	Path string
	// Scopes are all required.
	Scopes []string
	// OrgRequired says whether the organization header is required; nil
	// takes Config.OrgRequired.
	OrgRequired *bool
}

// Introspection is a route Keygate answers itself with the calling key's
// description, so that a client can test its key without reaching the
// upstream (Max AI's GET /v3/marketplace/me).
type Introspection struct {
	Path    string   // e.g. /v3/marketplace/me; empty: off
	Methods []string // matched case-insensitively; empty: GET
}

// Config is the route policy as configured; New validates and compiles it.
type Config struct {
	// Routes are tried in order; the first match wins.
	Routes []Route
	// DefaultRoute, if set, is used when no rule matches; its Path and
	// Methods are ignored. Nil: such a request is route_not_found.
	DefaultRoute *Route
	// OrgRequired is the global default for the organization header.
	OrgRequired bool
	// ScopeForm is how scopes are written; empty means ScopeResourceAction.
	ScopeForm ScopeForm
	// Introspection is the route Keygate answers itself; its Path must be
	// a plain path (no pattern, query or fragment).
	Introspection Introspection
}

// Match is the route a request resolved to: what the caller needs to decide.
type Match struct {
	// Found is false when no rule, default or extension applies:
	// route_not_found.
	Found bool
	// Route names the route for logs: the rule's path pattern, "default"
	// or "context_extensions".
	Route string
	// Scopes are the required scopes, never nil when Found; shared, do not
	// modify.
	Scopes []string
	// OrgRequired says whether the organization header must be present.
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

// Policy is a compiled route policy, built once by New so that matching a
// request does no parsing. It is safe for concurrent use.
type Policy struct {
	rules []rule
	def   *Match
	form  ScopeForm
	org   bool
	intro Introspection
	// extScopes caches parsed keygate.scopes values: they come from the
	// proxy's route config, a small fixed set, but arrive on every request.
	extScopes sync.Map // string → []string
	extCached atomic.Int32
}

// maxExtCache bounds extScopes, in case a proxy sends ever-new values.
const maxExtCache = 4096

// New validates and compiles cfg. Its errors name the offending field as
// the config file spells it, e.g. `routes[2].path: "api" must start with /`
// or `routes[0].scopes[1]: "patients" is not resource:action`. A path must
// start with "/", have no empty, dot or encoded-slash segment, use "*" only
// as a whole segment and "**" only as the last; methods must be HTTP tokens;
// scopes must be valid in cfg.ScopeForm.
func New(cfg Config) (*Policy, error) {
	if cfg.ScopeForm == "" {
		cfg.ScopeForm = ScopeResourceAction
	}
	if cfg.ScopeForm != ScopeResourceAction && cfg.ScopeForm != ScopeActionResource {
		return nil, fmt.Errorf("scopes.form: %q is not resource:action or action:resource", cfg.ScopeForm)
	}
	p := &Policy{form: cfg.ScopeForm, org: cfg.OrgRequired}
	if err := p.setIntrospection(cfg.Introspection); err != nil {
		return nil, err
	}
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

func (p *Policy) setIntrospection(in Introspection) error {
	if in.Path == "" {
		return nil
	}
	if in.Path[0] != '/' || strings.ContainsAny(in.Path, "?#*") {
		return fmt.Errorf("introspection.path: %q must be a plain path starting with /", in.Path)
	}
	p.intro.Path = in.Path
	for i, m := range in.Methods {
		if !isToken(m) {
			return fmt.Errorf("introspection.methods[%d]: %q is not an HTTP method", i, m)
		}
		p.intro.Methods = append(p.intro.Methods, strings.ToUpper(m))
	}
	if len(p.intro.Methods) == 0 {
		p.intro.Methods = []string{http.MethodGet}
	}
	return nil
}

// Introspects reports whether a request is for the introspection route:
// its path (query and fragment ignored, one trailing slash allowed) is the
// route's and its method one of the route's. HEAD counts as GET.
func (p *Policy) Introspects(method, path string) bool {
	if p.intro.Path == "" {
		return false
	}
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if path != p.intro.Path && path != p.intro.Path+"/" {
		return false
	}
	if strings.EqualFold(method, http.MethodHead) {
		method = http.MethodGet
	}
	for _, m := range p.intro.Methods {
		if strings.EqualFold(m, method) {
			return true
		}
	}
	return false
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

// clean copies scopes, so that a later change to the config cannot reach
// the policy, with no spare capacity, so that a caller's append to a
// Match's Scopes cannot write into the shared array; never nil.
func clean(scopes []string) []string {
	out := make([]string, len(scopes))
	copy(out, scopes)
	return out
}

// compilePath splits a pattern into segments. Patterns, like paths, are
// matched raw, as Envoy sends them, never percent-decoded (see Match), so a
// literal segment must be written as it appears on the wire.
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
		case ambiguousSegment(part):
			return nil, fmt.Errorf("%q: dot segments, encoded slashes and backslashes never match", pat)
		case !pathChars(part):
			return nil, fmt.Errorf("%q: segment %q holds a character that is not allowed in a URL path unencoded", pat, part)
		default:
			segs = append(segs, segment{kind: segLiteral, lit: part})
		}
	}
	return segs, nil
}

// pathChars reports whether seg holds only RFC 3986 pchar characters, with
// '%' starting a two-digit hex escape.
func pathChars(seg string) bool {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0:
		case c == '%' && i+2 < len(seg) && isHex(seg[i+1]) && isHex(seg[i+2]):
			i += 2
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// ErrBadExtension is wrapped by Match's errors: a context extension has a
// bad value. Extensions come from the proxy's route configuration, not from
// the client, so the caller reports an operator's mistake, not a bad request.
var ErrBadExtension = errors.New("bad context extension")

// Match resolves the route of a request, so that the caller knows which
// scopes it needs and whether it must name an organization.
//
// Rules are tried in order and the first whose methods and path match
// wins; else DefaultRoute, if set; else Found is false (route_not_found).
// Methods match case-insensitively (HEAD wherever GET is allowed), paths
// case-sensitively; the query
// string and fragment are ignored. A trailing slash is ignored ("/a/"
// matches "/a", "/a/*" matches "/a/b/"), an empty segment ("//") matches
// only inside **, and ** matches zero or more segments ("/a" matches
// "/a/**").
//
// The path is matched raw, as Envoy sends it, never percent-decoded:
// decoding would let "%2F" smuggle a segment boundary past a rule, and the
// upstream decides for itself what an escape means. For the same reason a
// path the upstream might read as a different path — a dot segment ("/a/../b",
// also "%2e%2e"), an encoded slash or backslash ("%2F", "%5C"), or a raw
// backslash — matches nothing, not even DefaultRoute or the context
// extensions: Envoy normally normalizes paths (normalize_path,
// path_with_escaped_slashes_action) before ext_authz, so such a path means
// that normalization is off, and guessing what the upstream will make of
// it could hand out the wrong route's scopes.
//
// ext are Envoy's per-route context_extensions. ExtScopes ("keygate.scopes",
// comma-joined, spaces trimmed, empty entries dropped) replaces the rule's
// scopes, and a request carrying it needs no rule (Route is
// "context_extensions"); ExtOrgRequired ("keygate.org_required", true or
// false, any case) overrides org_required. The precedence of org_required
// is extension, then the rule (or DefaultRoute), then Config.OrgRequired.
// A malformed extension value (a bad scope, a bool that is neither true nor
// false) returns an error wrapping ErrBadExtension and a zero Match.
//
// Match allocates nothing for a request without extensions, nor for one
// whose ExtScopes value was seen before.
func (p *Policy) Match(method, path string, ext map[string]string) (Match, error) {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	if ambiguous(path) {
		return Match{}, nil
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
		switch v = strings.TrimSpace(v); {
		case strings.EqualFold(v, "true"):
			m.OrgRequired = true
		case strings.EqualFold(v, "false"):
			m.OrgRequired = false
		default:
			return Match{}, fmt.Errorf("%w: %s=%q is not true or false", ErrBadExtension, ExtOrgRequired, v)
		}
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
	return out[:len(out):len(out)], nil // shared: no room for a caller's append
}

func (p *Policy) matchRules(method, path string) (Match, bool) {
	for i := range p.rules {
		r := &p.rules[i]
		if r.allows(method) && matchPath(r.segs, path) {
			return r.match, true
		}
	}
	if p.def != nil {
		return *p.def, true
	}
	return Match{}, false
}

// allows reports whether the rule covers method. A rule that allows GET
// allows HEAD: a HEAD is a GET without the body (RFC 9110, 9.3.2), and
// proxies forward it as sent.
func (r *rule) allows(method string) bool {
	if len(r.methods) == 0 {
		return true
	}
	head := strings.EqualFold(method, http.MethodHead)
	for _, m := range r.methods {
		if strings.EqualFold(m, method) || head && m == http.MethodGet {
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

// ambiguous reports whether the upstream might read path as another path
// than the one Keygate matches: it has a dot segment, an encoded slash or
// backslash, or a raw backslash. One pass, linear in len(path).
func ambiguous(path string) bool {
	for path != "" {
		seg := path
		if i := strings.IndexByte(path, '/'); i >= 0 {
			seg, path = path[:i], path[i+1:]
		} else {
			path = ""
		}
		if ambiguousSegment(seg) {
			return true
		}
	}
	return false
}

// ambiguousSegment reports whether seg is "." or "..", written with raw or
// percent-encoded dots ("%2e", any case), or holds "%2F", "%5C" or '\\'.
func ambiguousSegment(seg string) bool {
	dots, other := 0, false
	for i := 0; i < len(seg); i++ {
		switch c := seg[i]; {
		case c == '\\':
			return true
		case c == '.':
			dots++
		case c == '%' && i+2 < len(seg):
			hi, lo := seg[i+1], seg[i+2]|0x20 // lo in lower case
			switch {
			case hi == '2' && lo == 'e':
				dots++
				i += 2
			case hi == '2' && lo == 'f', hi == '5' && lo == 'c':
				return true
			default:
				other = true
			}
		default:
			other = true
		}
	}
	return !other && (dots == 1 || dots == 2)
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
