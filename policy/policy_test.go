package policy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func ptr(b bool) *bool { return &b }

func mustNew(t testing.TB, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// designRoutes are the rules of DESIGN.md's example plus a few more.
func designRoutes() []Route {
	return []Route{
		{Methods: []string{"GET"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:read"}},
		{Methods: []string{"POST", "PUT", "PATCH"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:write"}, OrgRequired: ptr(true)},
		{Methods: []string{"get"}, Path: "/api/v1/forms/*", Scopes: []string{"forms:read"}, OrgRequired: ptr(false)},
		{Path: "/api/v1/forms/*/submissions/*", Scopes: []string{"forms:read", "submissions:write"}},
		{Path: "/healthz"},
		{Path: "/"},
	}
}

func TestMatch(t *testing.T) {
	p := mustNew(t, Config{Routes: designRoutes()})
	tests := []struct {
		name   string
		method string
		path   string
		found  bool
		route  string
		scopes []string
		org    bool
	}{
		{"get patients rest", "GET", "/api/v1/patients/123", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"double star zero segments", "GET", "/api/v1/patients", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"double star many segments", "GET", "/api/v1/patients/1/notes/2/x", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"double star prefix is segment-wise", "GET", "/api/v1/patientsx", false, "", nil, false},
		{"first match wins by method", "POST", "/api/v1/patients/1", true, "/api/v1/patients/**", []string{"patients:write"}, true},
		{"method lower case", "post", "/api/v1/patients/1", true, "/api/v1/patients/**", []string{"patients:write"}, true},
		{"method mixed case", "pAtCh", "/api/v1/patients/1", true, "/api/v1/patients/**", []string{"patients:write"}, true},
		{"rule method lower case", "GET", "/api/v1/forms/9", true, "/api/v1/forms/*", []string{"forms:read"}, false},
		{"method not allowed", "DELETE", "/api/v1/patients/1", false, "", nil, false},
		{"star one segment", "HEAD", "/api/v1/forms/9/submissions/3", true, "/api/v1/forms/*/submissions/*", []string{"forms:read", "submissions:write"}, false},
		{"star not two segments", "GET", "/api/v1/forms/9/10", false, "", nil, false},
		{"star not zero segments", "GET", "/api/v1/forms", false, "", nil, false},
		{"star with trailing slash empty", "GET", "/api/v1/forms/", false, "", nil, false},
		{"trailing slash on literal", "GET", "/healthz/", true, "/healthz", []string{}, false},
		{"trailing slash on star", "GET", "/api/v1/forms/9/", true, "/api/v1/forms/*", []string{"forms:read"}, false},
		{"trailing slash on double star", "GET", "/api/v1/patients/", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"two trailing slashes", "GET", "/healthz//", false, "", nil, false},
		{"double slash inside", "GET", "/api//v1/patients/1", false, "", nil, false},
		{"double slash before star", "GET", "/api/v1/forms//9", false, "", nil, false},
		{"double slash as star segment", "GET", "/api/v1/forms//", false, "", nil, false},
		{"root", "GET", "/", true, "/", []string{}, false},
		{"empty path", "GET", "", false, "", nil, false},
		{"relative path", "GET", "healthz", false, "", nil, false},
		{"query ignored", "GET", "/healthz?x=1", true, "/healthz", []string{}, false},
		{"query with slash ignored", "GET", "/healthz?next=/api/v1/patients", true, "/healthz", []string{}, false},
		{"fragment ignored", "GET", "/healthz#frag", true, "/healthz", []string{}, false},
		{"query on double star", "GET", "/api/v1/patients?id=1", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"percent-encoded literal not decoded", "GET", "/health%7A", false, "", nil, false},
		{"percent-encoded byte in a star segment", "GET", "/api/v1/forms/caf%C3%A9", true, "/api/v1/forms/*", []string{"forms:read"}, false},
		{"percent-encoded space in a star segment", "GET", "/api/v1/forms/a%20b", true, "/api/v1/forms/*", []string{"forms:read"}, false},
		{"stray percent is literal", "GET", "/api/v1/forms/100%", true, "/api/v1/forms/*", []string{"forms:read"}, false},
		// Ambiguous paths match nothing: the upstream may read them as another path.
		{"encoded slash in a star segment", "GET", "/api/v1/forms/9%2Fsubmissions%2F3", false, "", nil, false},
		{"encoded slash lower case", "GET", "/api/v1/forms/9%2fx", false, "", nil, false},
		{"encoded slash under double star", "GET", "/api/v1/patients/1%2F..%2F..%2Fadmin", false, "", nil, false},
		{"encoded slash between literals", "GET", "/api/v1%2Fforms/9", false, "", nil, false},
		{"encoded backslash", "GET", "/api/v1/patients/1%5C..", false, "", nil, false},
		{"encoded backslash lower case", "GET", "/api/v1/patients/1%5cx", false, "", nil, false},
		{"raw backslash", "GET", `/api/v1/patients/1\x`, false, "", nil, false},
		{"dot segment", "GET", "/api/v1/patients/../forms/1", false, "", nil, false},
		{"single dot segment", "GET", "/api/v1/patients/./1", false, "", nil, false},
		{"trailing dot dot", "GET", "/api/v1/patients/..", false, "", nil, false},
		{"trailing dot", "GET", "/healthz/.", false, "", nil, false},
		{"encoded dot dot", "GET", "/api/v1/patients/%2e%2e/x", false, "", nil, false},
		{"encoded dot dot upper case", "GET", "/api/v1/patients/%2E%2E", false, "", nil, false},
		{"half encoded dot dot", "GET", "/api/v1/patients/.%2E/x", false, "", nil, false},
		{"encoded single dot", "GET", "/api/v1/patients/%2e", false, "", nil, false},
		{"dot segment in the query is fine", "GET", "/api/v1/patients/1?next=/../admin%2F", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"dots in a name are fine", "GET", "/api/v1/patients/a..b", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"three dots are a name", "GET", "/api/v1/patients/...", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"encoded dots in a name are fine", "GET", "/api/v1/patients/a%2e%2e", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"truncated escape is literal", "GET", "/api/v1/patients/%2", true, "/api/v1/patients/**", []string{"patients:read"}, false},
		{"case-sensitive path", "GET", "/API/v1/patients/1", false, "", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Match(tt.method, tt.path, nil)
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if m.Found != tt.found {
				t.Fatalf("Found = %v, want %v (%+v)", m.Found, tt.found, m)
			}
			if !tt.found {
				return
			}
			if m.Route != tt.route || !reflect.DeepEqual(m.Scopes, tt.scopes) || m.OrgRequired != tt.org {
				t.Errorf("got %+v, want route %q scopes %q org %v", m, tt.route, tt.scopes, tt.org)
			}
		})
	}
}

func TestMatchRootOnly(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		path    string
		want    bool
	}{
		{"root matches root", "/", "/", true},
		{"root not child", "/", "/a", false},
		{"root not double slash", "/", "//", false},
		{"all matches root", "/**", "/", true},
		{"all matches deep", "/**", "/a/b/c", true},
		{"all matches double slash", "/**", "//x", true},
		{"star not root", "/*", "/", false},
		{"star one", "/*", "/a", true},
		{"pattern trailing slash", "/a/", "/a", true},
		{"pattern trailing slash, path too", "/a/", "/a/", true},
		{"many stars", "/*/*/*", "/a/b/c", true},
		{"many stars short", "/*/*/*", "/a/b", false},
		{"many stars long", "/*/*/*", "/a/b/c/d", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{Routes: []Route{{Path: tt.pattern}}})
			m, err := p.Match("GET", tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.Found != tt.want {
				t.Errorf("%q vs %q: Found = %v, want %v", tt.pattern, tt.path, m.Found, tt.want)
			}
		})
	}
}

func TestMatchHuge(t *testing.T) {
	manySegs := strings.Repeat("/a", 50_000)           // 100k characters, 50k segments
	oneSeg := "/" + strings.Repeat("x", 100_000)       // one 100k segment
	manyStars := strings.Repeat("/*", 1000)            // a pattern with 1000 stars
	manyStarsPath := strings.Repeat("/s", 1000)        // matching it
	slashes := "/" + strings.Repeat("/", 100_000)      // all empty segments
	dotsDeep := strings.Repeat("/a", 50_000) + "/../b" // dot segment at the end
	tests := []struct {
		name    string
		pattern string
		path    string
		want    bool
	}{
		{"many segments vs double star", "/**", manySegs, true},
		{"many segments vs prefix double star", "/a/a/**", manySegs, true},
		{"many segments vs star", "/*", manySegs, false},
		{"many segments vs literal", "/a", manySegs, false},
		{"one huge segment vs star", "/*", oneSeg, true},
		{"one huge segment vs literal", oneSeg, oneSeg, true},
		{"one huge segment vs other literal", oneSeg + "y", oneSeg, false},
		{"many stars match", manyStars, manyStarsPath, true},
		{"many stars one short", manyStars, manyStarsPath[2:], false},
		{"many stars one long", manyStars, manyStarsPath + "/s", false},
		{"many stars then double star", manyStars + "/**", manySegs, true},
		{"many stars vs huge path", manyStars, manySegs, false},
		{"slashes vs star", "/*", slashes, false},
		{"slashes vs many stars", manyStars, slashes, false},
		{"dot at the end of huge path", "/**", dotsDeep, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{Routes: []Route{{Path: tt.pattern}}})
			m, err := p.Match("GET", tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.Found != tt.want {
				t.Errorf("Found = %v, want %v", m.Found, tt.want)
			}
		})
	}
}

func TestMatchDefaultRoute(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		method string
		path   string
		want   Match
	}{
		{
			name:   "no rule, no default",
			cfg:    Config{Routes: designRoutes()},
			method: "GET", path: "/nope",
			want: Match{},
		},
		{
			name:   "no rule, default with no scopes",
			cfg:    Config{Routes: designRoutes(), DefaultRoute: &Route{}},
			method: "GET", path: "/nope",
			want: Match{Found: true, Route: "default", Scopes: []string{}},
		},
		{
			name:   "default takes the global org default",
			cfg:    Config{DefaultRoute: &Route{Scopes: []string{"misc:read"}}, OrgRequired: true},
			method: "GET", path: "/nope",
			want: Match{Found: true, Route: "default", Scopes: []string{"misc:read"}, OrgRequired: true},
		},
		{
			name:   "default org_required overrides global",
			cfg:    Config{DefaultRoute: &Route{OrgRequired: ptr(false)}, OrgRequired: true},
			method: "GET", path: "/nope",
			want: Match{Found: true, Route: "default", Scopes: []string{}, OrgRequired: false},
		},
		{
			name:   "default path and methods are ignored",
			cfg:    Config{DefaultRoute: &Route{Path: "/only", Methods: []string{"GET"}}},
			method: "DELETE", path: "/other",
			want: Match{Found: true, Route: "default", Scopes: []string{}},
		},
		{
			name:   "rule beats default",
			cfg:    Config{Routes: designRoutes(), DefaultRoute: &Route{}},
			method: "GET", path: "/healthz",
			want: Match{Found: true, Route: "/healthz", Scopes: []string{}},
		},
		{
			name:   "dot segments do not fall to default",
			cfg:    Config{Routes: designRoutes(), DefaultRoute: &Route{}},
			method: "GET", path: "/healthz/../api/v1/patients/1",
			want: Match{},
		},
		{
			name:   "encoded slash does not fall to default",
			cfg:    Config{Routes: designRoutes(), DefaultRoute: &Route{}},
			method: "GET", path: "/x%2F..%2Fapi/v1/patients/1",
			want: Match{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, tt.cfg)
			m, err := p.Match(tt.method, tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, tt.want) {
				t.Errorf("got %+v, want %+v", m, tt.want)
			}
		})
	}
}

func TestOrgRequiredPrecedence(t *testing.T) {
	routes := []Route{
		{Path: "/unset"},
		{Path: "/on", OrgRequired: ptr(true)},
		{Path: "/off", OrgRequired: ptr(false)},
	}
	tests := []struct {
		name   string
		global bool
		path   string
		ext    map[string]string
		want   bool
	}{
		{"global false, rule unset", false, "/unset", nil, false},
		{"global true, rule unset", true, "/unset", nil, true},
		{"rule true beats global false", false, "/on", nil, true},
		{"rule false beats global true", true, "/off", nil, false},
		{"ext false beats rule true", false, "/on", map[string]string{ExtOrgRequired: "false"}, false},
		{"ext true beats rule false", true, "/off", map[string]string{ExtOrgRequired: "true"}, true},
		{"ext true beats global false", false, "/unset", map[string]string{ExtOrgRequired: "true"}, true},
		{"ext with spaces", false, "/unset", map[string]string{ExtOrgRequired: " true "}, true},
		{"ext scopes keep rule org", false, "/on", map[string]string{ExtScopes: "a:b"}, true},
		{"ext scopes keep rule org false", true, "/off", map[string]string{ExtScopes: "a:b"}, false},
		{"ext scopes, no rule: global", true, "/none", map[string]string{ExtScopes: "a:b"}, true},
		{"ext scopes and org: org ext wins", true, "/on", map[string]string{ExtScopes: "a:b", ExtOrgRequired: "false"}, false},
		{"unrelated ext ignored", true, "/off", map[string]string{"other": "x"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{Routes: routes, OrgRequired: tt.global})
			if p.OrgRequired() != tt.global {
				t.Errorf("OrgRequired() = %v, want %v", p.OrgRequired(), tt.global)
			}
			m, err := p.Match("GET", tt.path, tt.ext)
			if err != nil {
				t.Fatal(err)
			}
			if m.OrgRequired != tt.want {
				t.Errorf("OrgRequired = %v, want %v (%+v)", m.OrgRequired, tt.want, m)
			}
		})
	}
}

func TestMatchExtensions(t *testing.T) {
	tests := []struct {
		name    string
		form    ScopeForm
		method  string
		path    string
		ext     map[string]string
		want    Match
		wantErr bool
	}{
		{
			name: "scopes need no rule", path: "/unknown",
			ext:  map[string]string{ExtScopes: "patients:read,forms:write"},
			want: Match{Found: true, Route: "context_extensions", Scopes: []string{"patients:read", "forms:write"}},
		},
		{
			name: "scopes override a rule", path: "/api/v1/patients/1",
			ext:  map[string]string{ExtScopes: "forms:read"},
			want: Match{Found: true, Route: "context_extensions", Scopes: []string{"forms:read"}},
		},
		{
			name: "scopes override even when method has no rule", method: "DELETE", path: "/api/v1/patients/1",
			ext:  map[string]string{ExtScopes: "patients:delete"},
			want: Match{Found: true, Route: "context_extensions", Scopes: []string{"patients:delete"}},
		},
		{
			name: "scopes with spaces and empties", path: "/x",
			ext:  map[string]string{ExtScopes: " patients:read , ,forms:* ,"},
			want: Match{Found: true, Route: "context_extensions", Scopes: []string{"patients:read", "forms:*"}},
		},
		{
			name: "empty scopes: no scope needed", path: "/x",
			ext:  map[string]string{ExtScopes: ""},
			want: Match{Found: true, Route: "context_extensions", Scopes: []string{}},
		},
		{
			name: "action:resource scopes", form: ScopeActionResource, path: "/x",
			ext:  map[string]string{ExtScopes: "read:patients,*:forms"},
			want: Match{Found: true, Route: "context_extensions", Scopes: []string{"read:patients", "*:forms"}},
		},
		{
			name: "scopes on a dot path: still nothing", path: "/public/../admin",
			ext:  map[string]string{ExtScopes: "public:read"},
			want: Match{},
		},
		{
			name: "scopes on an encoded-slash path: still nothing", path: "/public/..%2Fadmin",
			ext:  map[string]string{ExtScopes: "public:read"},
			want: Match{},
		},
		{
			name: "org ext any case", path: "/healthz",
			ext:  map[string]string{ExtOrgRequired: "TRUE"},
			want: Match{Found: true, Route: "/healthz", Scopes: []string{}, OrgRequired: true},
		},
		{
			name: "org ext alone without a rule stays not found", path: "/unknown",
			ext:  map[string]string{ExtOrgRequired: "true"},
			want: Match{OrgRequired: true},
		},
		{
			name: "org ext alone on a rule", path: "/healthz",
			ext:  map[string]string{ExtOrgRequired: "true"},
			want: Match{Found: true, Route: "/healthz", Scopes: []string{}, OrgRequired: true},
		},
		{name: "bad scope", path: "/x", ext: map[string]string{ExtScopes: "patients"}, wantErr: true},
		{name: "bad scope upper case", path: "/x", ext: map[string]string{ExtScopes: "patients:read,Forms:read"}, wantErr: true},
		{name: "wrong form", form: ScopeActionResource, path: "/x", ext: map[string]string{ExtScopes: "patients:*"}, wantErr: true},
		{name: "bad org value", path: "/healthz", ext: map[string]string{ExtOrgRequired: "yes"}, wantErr: true},
		{name: "empty org value", path: "/healthz", ext: map[string]string{ExtOrgRequired: ""}, wantErr: true},
		{name: "org value 1 is not a bool here", path: "/healthz", ext: map[string]string{ExtOrgRequired: "1"}, wantErr: true},
		{name: "bad scope after good ones", path: "/x", ext: map[string]string{ExtScopes: "a:b, c:d, e"}, wantErr: true},
		{name: "bad org value with good scopes", path: "/healthz", ext: map[string]string{ExtScopes: "a:b", ExtOrgRequired: "maybe"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Config{Routes: designRoutes(), ScopeForm: tt.form})
			method := tt.method
			if method == "" {
				method = "GET"
			}
			m, err := p.Match(method, tt.path, tt.ext)
			if tt.wantErr {
				if !errors.Is(err, ErrBadExtension) {
					t.Fatalf("err = %v, want ErrBadExtension", err)
				}
				if !reflect.DeepEqual(m, Match{}) {
					t.Errorf("match on error = %+v, want zero", m)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, tt.want) {
				t.Errorf("got %+v, want %+v", m, tt.want)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	good := Route{Path: "/ok", Scopes: []string{"a:b"}}
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"bad form", Config{ScopeForm: "resource.action"}, "scopes.form"},
		{"path without slash", Config{Routes: []Route{good, good, {Path: "api"}}}, "routes[2].path"},
		{"empty path", Config{Routes: []Route{{Path: ""}}}, "routes[0].path"},
		{"path with query", Config{Routes: []Route{good, {Path: "/a?b=1"}}}, "routes[1].path"},
		{"path with fragment", Config{Routes: []Route{{Path: "/a#b"}}}, "routes[0].path"},
		{"path double slash", Config{Routes: []Route{{Path: "/a//b"}}}, "routes[0].path"},
		{"path only double slash", Config{Routes: []Route{{Path: "//"}}}, "routes[0].path"},
		{"path two trailing slashes", Config{Routes: []Route{{Path: "/a//"}}}, "routes[0].path"},
		{"double star not last", Config{Routes: []Route{{Path: "/**/a"}}}, "routes[0].path"},
		{"partial star", Config{Routes: []Route{{Path: "/a*"}}}, "routes[0].path"},
		{"triple star", Config{Routes: []Route{{Path: "/***"}}}, "routes[0].path"},
		{"dot segment", Config{Routes: []Route{{Path: "/a/./b"}}}, "routes[0].path"},
		{"dot dot segment", Config{Routes: []Route{{Path: "/a/.."}}}, "routes[0].path"},
		{"encoded dot dot segment", Config{Routes: []Route{{Path: "/a/%2E%2e/b"}}}, "routes[0].path"},
		{"encoded slash", Config{Routes: []Route{good, good, good, {Path: "/a%2Fb"}}}, "routes[3].path"},
		{"encoded backslash", Config{Routes: []Route{{Path: "/a%5cb"}}}, "routes[0].path"},
		{"raw backslash", Config{Routes: []Route{{Path: `/a\b`}}}, "routes[0].path"},
		{"space", Config{Routes: []Route{{Path: "/a b"}}}, "routes[0].path"},
		{"non-ASCII", Config{Routes: []Route{{Path: "/café"}}}, "routes[0].path"},
		{"control byte", Config{Routes: []Route{{Path: "/a\x00"}}}, "routes[0].path"},
		{"bad escape", Config{Routes: []Route{{Path: "/a%zz"}}}, "routes[0].path"},
		{"truncated escape", Config{Routes: []Route{{Path: "/a%2"}}}, "routes[0].path"},
		{"empty method", Config{Routes: []Route{{Methods: []string{"GET", ""}, Path: "/a"}}}, "routes[0].methods[1]"},
		{"method with space", Config{Routes: []Route{{Methods: []string{"GET", "P UT"}, Path: "/a"}}}, "routes[0].methods[1]"},
		{"method with slash", Config{Routes: []Route{good, {Methods: []string{"GET/"}, Path: "/a"}}}, "routes[1].methods[0]"},
		{"bad scope", Config{Routes: []Route{good, {Path: "/a", Scopes: []string{"patients"}}}}, "routes[1].scopes[0]"},
		{"bad second scope", Config{Routes: []Route{{Path: "/a", Scopes: []string{"a:b", "A:b"}}}}, "routes[0].scopes[1]"},
		{"scope of wrong form", Config{ScopeForm: ScopeActionResource, Routes: []Route{{Path: "/a", Scopes: []string{"patients:*"}}}}, "routes[0].scopes[0]"},
		{"bad default scope", Config{DefaultRoute: &Route{Scopes: []string{"x"}}}, "default_route.scopes[0]"},
		{"bad default second scope", Config{DefaultRoute: &Route{Scopes: []string{"a:b", "a:b:c"}}}, "default_route.scopes[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if err == nil {
				t.Fatalf("New = %v, nil; want an error naming %s", p, tt.field)
			}
			if !strings.HasPrefix(err.Error(), tt.field+":") {
				t.Errorf("err = %q, want it to start with %q", err, tt.field+":")
			}
		})
	}
}

func TestNewValid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		form ScopeForm
	}{
		{"zero config", Config{}, ScopeResourceAction},
		{"resource:action", Config{ScopeForm: ScopeResourceAction, Routes: []Route{{Path: "/a", Scopes: []string{"patients:*"}}}}, ScopeResourceAction},
		{"action:resource", Config{ScopeForm: ScopeActionResource, Routes: []Route{{Path: "/a", Scopes: []string{"*:patients", "read:patients"}}}}, ScopeActionResource},
		{"extension methods", Config{Routes: []Route{{Methods: []string{"PROPFIND", "m-search"}, Path: "/a"}}}, ScopeResourceAction},
		{"path punctuation and escapes", Config{Routes: []Route{{Path: "/v1/caf%C3%A9/~u:x@y/a.b/...;v=1/**"}}}, ScopeResourceAction},
		{"design routes", Config{Routes: designRoutes(), DefaultRoute: &Route{Scopes: []string{}}}, ScopeResourceAction},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, tt.cfg)
			if p.form != tt.form {
				t.Errorf("form = %q, want %q", p.form, tt.form)
			}
		})
	}
}

func TestHeadFollowsGet(t *testing.T) {
	p := mustNew(t, Config{Routes: []Route{
		{Methods: []string{"get"}, Path: "/a/**", Scopes: []string{"a:read"}},
		{Methods: []string{"POST"}, Path: "/b", Scopes: []string{"b:write"}},
		{Methods: []string{"HEAD"}, Path: "/c", Scopes: []string{"c:read"}},
	}})
	tests := []struct {
		name, method, path string
		found              bool
	}{
		{"head on get route", "HEAD", "/a/1", true},
		{"head lower case", "head", "/a/1", true},
		{"head on post-only route", "HEAD", "/b", false},
		{"head-only route", "HEAD", "/c", true},
		{"get on head-only route", "GET", "/c", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Match(tt.method, tt.path, nil)
			if err != nil || m.Found != tt.found {
				t.Fatalf("Match(%s %s) = %+v, %v; want found=%v", tt.method, tt.path, m, err, tt.found)
			}
		})
	}
}

func TestIntrospects(t *testing.T) {
	p := mustNew(t, Config{Introspection: Introspection{Path: "/v3/marketplace/me"}})
	tests := []struct {
		name, method, path string
		want               bool
	}{
		{"get", "GET", "/v3/marketplace/me", true},
		{"trailing slash", "GET", "/v3/marketplace/me/", true},
		{"query ignored", "GET", "/v3/marketplace/me?x=1", true},
		{"head as get", "HEAD", "/v3/marketplace/me", true},
		{"post not allowed", "POST", "/v3/marketplace/me", false},
		{"other path", "GET", "/v3/marketplace/mex", false},
		{"deeper path", "GET", "/v3/marketplace/me/x", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.Introspects(tt.method, tt.path); got != tt.want {
				t.Fatalf("Introspects(%s %s) = %v, want %v", tt.method, tt.path, got, tt.want)
			}
		})
	}
	if mustNew(t, Config{}).Introspects("GET", "/") {
		t.Error("an empty introspection path introspects")
	}
	for _, bad := range []Introspection{{Path: "me"}, {Path: "/me?x"}, {Path: "/me/*"}, {Path: "/me", Methods: []string{"GE T"}}} {
		if _, err := New(Config{Introspection: bad}); err == nil || !strings.HasPrefix(err.Error(), "introspection.") {
			t.Errorf("New(%+v) = %v, want an introspection.* error", bad, err)
		}
	}
}

// TestMatchExtensionsConcurrent runs Match with context extensions from
// many goroutines, so that -race checks the parsed-scopes cache, and past
// the cache's bound, so that uncached values still parse.
func TestMatchExtensionsConcurrent(t *testing.T) {
	p := mustNew(t, Config{Routes: designRoutes()})
	const workers, values = 4, maxExtCache + 500
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range values {
				v := fmt.Sprintf("r%d:read, r%d:*", (i+w)%values, w)
				m, err := p.Match("GET", "/x", map[string]string{ExtScopes: v})
				want := []string{fmt.Sprintf("r%d:read", (i+w)%values), fmt.Sprintf("r%d:*", w)}
				if err != nil || !reflect.DeepEqual(m.Scopes, want) {
					errs <- fmt.Errorf("Match(%q) = %+v, %v; want scopes %q", v, m, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A bad value is never cached as good.
	for range 2 {
		if _, err := p.Match("GET", "/x", map[string]string{ExtScopes: "Bad"}); !errors.Is(err, ErrBadExtension) {
			t.Fatalf("err = %v, want ErrBadExtension", err)
		}
	}
}

// TestMatchIsolation: a Policy keeps its own copy of the config, and a
// caller appending to a Match's shared Scopes cannot change the next one.
func TestMatchIsolation(t *testing.T) {
	routes := []Route{{Methods: []string{"GET"}, Path: "/a", Scopes: []string{"a:read", "a:list"}}}
	def := &Route{Scopes: []string{"d:read"}}
	p := mustNew(t, Config{Routes: routes, DefaultRoute: def})
	routes[0].Scopes[0] = "evil:*"
	routes[0].Path = "/b"
	def.Scopes[0] = "evil:*"
	for range 2 {
		m, _ := p.Match("GET", "/a", nil)
		if !reflect.DeepEqual(m.Scopes, []string{"a:read", "a:list"}) || m.Route != "/a" {
			t.Fatalf("rule changed under the policy: %+v", m)
		}
		_ = append(m.Scopes, "x:y")
		d, _ := p.Match("GET", "/zzz", nil)
		if !reflect.DeepEqual(d.Scopes, []string{"d:read"}) {
			t.Fatalf("default changed under the policy: %+v", d)
		}
		_ = append(d.Scopes, "x:y")
		e, _ := p.Match("GET", "/zzz", map[string]string{ExtScopes: "e:read"})
		if !reflect.DeepEqual(e.Scopes, []string{"e:read"}) {
			t.Fatalf("cached extension scopes changed: %+v", e)
		}
		_ = append(e.Scopes, "x:y")
	}
}

// TestMatchNonOriginPaths: Envoy sends origin-form paths; anything else
// matches no rule, and takes DefaultRoute if there is one.
func TestMatchNonOriginPaths(t *testing.T) {
	for _, path := range []string{"", "*", "example.com:443", "api/v1/patients/1", "?x=/api"} {
		p := mustNew(t, Config{Routes: []Route{{Path: "/**"}}})
		if m, err := p.Match("GET", path, nil); err != nil || m.Found {
			t.Errorf("Match(%q) = %+v, %v; want not found", path, m, err)
		}
		p = mustNew(t, Config{Routes: []Route{{Path: "/**"}}, DefaultRoute: &Route{}})
		if m, err := p.Match("OPTIONS", path, nil); err != nil || m.Route != "default" {
			t.Errorf("Match(%q) = %+v, %v; want default", path, m, err)
		}
	}
}
