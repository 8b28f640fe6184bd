package policy

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// literalPattern reports whether path, used as a rule, is a plain literal:
// it compiles and holds no wildcard.
func literalPattern(path string) bool {
	if strings.Contains(path, "*") || ambiguous(path) {
		return false
	}
	_, err := compilePath(path)
	return err == nil
}

func FuzzMatch(f *testing.F) {
	seeds := []struct{ method, path, query string }{
		{"GET", "/api/v1/patients/123", "x=1"},
		{"POST", "/api/v1/patients", ""},
		{"get", "/api/v1/forms/9/submissions/3", "a=b&c=d"},
		{"DELETE", "/healthz/", ""},
		{"GET", "/", "next=/admin"},
		{"PUT", "/api/v1/patients%2Fx", "y"},
		{"GET", "/a/../b", ""},
		{"GET", "//", ""},
		{"GET", "/a//b", "#x"},
		{"OPTIONS", "", "q"},
		{"GET", "/a?b", "c"},
		{"GET", "/a#b", ""},
		{"GET", "/" + strings.Repeat("a/", 100), "z"},
		{"GET", "/api/v1/patients/%2e%2E/x", ""},
		{"GET", "/api/v1/forms/1%5cx", ""},
		{"GET", `/api\v1`, ""},
		{"GET", "/caf%C3%A9/~x:y@z", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query)
	}
	base := designRoutes()
	open, err := New(Config{Routes: []Route{{Path: "/**"}}, DefaultRoute: &Route{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		routes := base
		literal := literalPattern(path)
		if literal {
			// The literal rule goes first so it is the one that wins.
			routes = append([]Route{{Path: path, Scopes: []string{"lit:read"}}}, base...)
		}
		p, err := New(Config{Routes: routes})
		if err != nil {
			t.Fatalf("New(%q): %v", path, err)
		}
		m1, err1 := p.Match(method, path, nil)
		m2, err2 := p.Match(method, path, nil)
		if !reflect.DeepEqual(m1, m2) || (err1 == nil) != (err2 == nil) {
			t.Fatalf("Match not deterministic: %+v %v / %+v %v", m1, err1, m2, err2)
		}
		if err1 != nil {
			t.Fatalf("Match without extensions failed: %v", err1)
		}
		if literal && (!m1.Found || m1.Route != path) {
			t.Fatalf("literal rule %q does not match itself: %+v", path, m1)
		}
		if literal {
			// Every segment replaced by * still matches, and so does **.
			stars := starPattern(path)
			for _, pat := range []string{stars, strings.TrimSuffix(stars, "/") + "/**"} {
				ps, err := New(Config{Routes: []Route{{Path: pat}}})
				if err != nil {
					t.Fatalf("New(%q): %v", pat, err)
				}
				if m, _ := ps.Match(method, path, nil); !m.Found {
					t.Fatalf("pattern %q does not match %q", pat, path)
				}
			}
		}
		// Fail closed: even /** with a default route matches exactly the
		// paths the upstream cannot read as another path (the default
		// takes those that do not start with /).
		clean := path
		if i := strings.IndexAny(clean, "?#"); i >= 0 {
			clean = clean[:i]
		}
		mo, err := open.Match(method, path, nil)
		if want := !ambiguous(clean); err != nil || mo.Found != want {
			t.Fatalf("open policy: Match(%q) = %+v, %v; want Found %v", path, mo, err, want)
		}
		if strings.HasPrefix(clean, "/") && !ambiguous(clean) {
			for _, sfx := range []string{"/..", "/.", "/%2e%2E", "/x%2F", "/x%5c"} {
				if m, _ := open.Match(method, clean+sfx, nil); m.Found {
					t.Fatalf("open policy matches ambiguous %q", clean+sfx)
				}
			}
		}
		mq, err := p.Match(method, path+"?"+query, nil)
		if err != nil || !reflect.DeepEqual(mq, m1) {
			t.Fatalf("query %q changed the result for %q: %+v vs %+v (%v)", query, path, mq, m1, err)
		}
		mf, err := p.Match(method, path+"#"+query, nil)
		if err != nil || !reflect.DeepEqual(mf, m1) {
			t.Fatalf("fragment %q changed the result for %q: %+v vs %+v (%v)", query, path, mf, m1, err)
		}
		// With extensions: never panics, and scopes carried there decide.
		ext := map[string]string{ExtScopes: query, ExtOrgRequired: method}
		me, err := p.Match(method, path, ext)
		if err == nil && ambiguous(clean) && me.Found {
			t.Fatalf("extensions made ambiguous %q match: %+v", path, me)
		}
		if err == nil && !ambiguous(clean) && (!me.Found || me.Route != "context_extensions") {
			t.Fatalf("scopes extension ignored: %+v", me)
		}
		// The second call may be served from the parsed-scopes cache.
		me2, err2 := p.Match(method, path, ext)
		if !reflect.DeepEqual(me, me2) || (err == nil) != (err2 == nil) {
			t.Fatalf("Match with extensions not deterministic: %+v %v / %+v %v", me, err, me2, err2)
		}
	})
}

// splitScope returns a scope's resource and action in form: the
// definition Covers is checked against.
func splitScope(form ScopeForm, s string) (resource, action string) {
	first, second, _ := strings.Cut(s, ":")
	if form == ScopeActionResource {
		return second, first
	}
	return first, second
}

// starPattern replaces every segment of path with *.
func starPattern(path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s != "" {
			segs[i] = "*"
		}
	}
	return strings.Join(segs, "/")
}

func splitScopes(form ScopeForm, s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if ValidScope(form, part) == nil {
			out = append(out, part)
		}
	}
	return out
}

func FuzzScopes(f *testing.F) {
	seeds := []struct {
		actionResource bool
		a, b           string
	}{
		{false, "patients:*", "patients:read"},
		{false, "patients:read,forms:write", "patients:*"},
		{false, "patients:read", "patients:write,forms:*"},
		{false, "a:b,a:*,c:d", "a:*,c:*"},
		{true, "*:patients", "read:patients"},
		{true, "read:patients,write:forms", "*:patients,*:forms"},
		{true, "patients:*", "read:patients"},
		{false, "", ""},
		{false, "x:*,x:*", "x:y,x:y"},
	}
	for _, s := range seeds {
		f.Add(s.actionResource, s.a, s.b)
	}
	f.Fuzz(func(t *testing.T, actionResource bool, a, b string) {
		form := ScopeResourceAction
		if actionResource {
			form = ScopeActionResource
		}
		p, err := New(Config{ScopeForm: form})
		if err != nil {
			t.Fatal(err)
		}
		// Never panics on anything.
		p.Covers(a, b)
		p.Missing([]string{a}, []string{b})
		p.Effective([]string{a}, []string{b})

		// On valid scopes Covers agrees with the definition: equal, or
		// granted is the wildcard of needed's resource.
		if ValidScope(form, a) == nil && ValidScope(form, b) == nil {
			ar, aa := splitScope(form, a)
			br, _ := splitScope(form, b)
			if want := a == b || aa == "*" && ar == br; p.Covers(a, b) != want {
				t.Fatalf("Covers(%q, %q) = %v, want %v", a, b, !want, want)
			}
		}

		as, bs := splitScopes(form, a), splitScopes(form, b)
		for _, s := range append(append([]string{}, as...), bs...) {
			if !p.Covers(s, s) {
				t.Fatalf("Covers(%q, %q) = false", s, s)
			}
		}
		coveredBy := func(have []string, s string) bool {
			for _, h := range have {
				if p.Covers(h, s) {
					return true
				}
			}
			return false
		}
		eff := p.Effective(as, bs)
		seen := map[string]bool{}
		for _, s := range eff {
			if seen[s] {
				t.Fatalf("Effective(%q, %q) = %q: %q twice", as, bs, eff, s)
			}
			seen[s] = true
			if ValidScope(form, s) != nil {
				t.Fatalf("Effective(%q, %q) = %q: %q is not valid", as, bs, eff, s)
			}
			if !coveredBy(as, s) || !coveredBy(bs, s) {
				t.Fatalf("Effective(%q, %q) = %q: %q not covered by both", as, bs, eff, s)
			}
		}
		// Intersection is symmetric as a set of what it allows.
		for _, s := range p.Effective(bs, as) {
			if !coveredBy(eff, s) {
				t.Fatalf("Effective not symmetric: %q from (%q, %q) not covered by %q", s, bs, as, eff)
			}
		}
		// Whatever both allow, Effective allows.
		for _, s := range append(append([]string{}, as...), bs...) {
			if coveredBy(as, s) && coveredBy(bs, s) && !coveredBy(eff, s) {
				t.Fatalf("Effective(%q, %q) = %q loses %q", as, bs, eff, s)
			}
		}
		miss, ok := p.Missing(as, bs)
		if ok {
			if coveredBy(as, miss) {
				t.Fatalf("Missing(%q, %q) = %q, which is covered", as, bs, miss)
			}
			if !slices.Contains(bs, miss) {
				t.Fatalf("Missing(%q, %q) = %q, not a needed scope", as, bs, miss)
			}
		} else {
			for _, n := range bs {
				if !coveredBy(as, n) {
					t.Fatalf("Missing(%q, %q) = none, but %q is not covered", as, bs, n)
				}
			}
		}
	})
}

func FuzzValidOrg(f *testing.F) {
	for _, s := range []string{
		"3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5f", "org_123", "a", "", " ", "org,1",
		"-org", "org\x00", "orgé", strings.Repeat("a", 128), strings.Repeat("a", 129),
		"tenant.eu:org-1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if !ValidOrg(id) {
			return
		}
		if len(id) < 1 || len(id) > 128 {
			t.Fatalf("ValidOrg accepted %d bytes", len(id))
		}
		for i := 0; i < len(id); i++ {
			c := id[i]
			alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
			if !alnum && !strings.ContainsRune("._:-", rune(c)) {
				t.Fatalf("ValidOrg(%q) accepted byte %q", id, c)
			}
			if i == 0 && !alnum {
				t.Fatalf("ValidOrg(%q) accepted leading %q", id, c)
			}
		}
	})
}
