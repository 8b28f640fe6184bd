package policy

import (
	"fmt"
	"testing"
)

// benchRoutes is a realistic 20-rule table.
func benchRoutes() []Route {
	var routes []Route
	for _, res := range []string{"patients", "forms", "submissions", "appointments", "invoices"} {
		routes = append(routes,
			Route{Methods: []string{"GET", "HEAD"}, Path: "/api/v1/" + res, Scopes: []string{res + ":list"}},
			Route{Methods: []string{"GET", "HEAD"}, Path: "/api/v1/" + res + "/*", Scopes: []string{res + ":read"}},
			Route{Methods: []string{"POST", "PUT", "PATCH"}, Path: "/api/v1/" + res + "/**", Scopes: []string{res + ":write"}, OrgRequired: ptr(true)},
			Route{Methods: []string{"DELETE"}, Path: "/api/v1/" + res + "/*", Scopes: []string{res + ":delete", res + ":write"}},
		)
	}
	return routes
}

func benchPolicy(b *testing.B) *Policy {
	b.Helper()
	p, err := New(Config{Routes: benchRoutes(), DefaultRoute: &Route{}})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func BenchmarkMatch(b *testing.B) {
	p := benchPolicy(b)
	// Rule 10 of 20: PATCH /api/v1/submissions/**.
	const method, path = "patch", "/api/v1/submissions/8c1e7d4a/answers/3?include=all"
	if m, _ := p.Match(method, path, nil); m.Route != "/api/v1/submissions/**" {
		b.Fatalf("matched %+v", m)
	}
	b.ReportAllocs()
	for b.Loop() {
		if m, err := p.Match(method, path, nil); err != nil || !m.Found {
			b.Fatal(m, err)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p, err := New(Config{Routes: benchRoutes()})
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if m, _ := p.Match("PATCH", "/api/v1/submissions/8c1e7d4a/answers/3?x=1", nil); !m.Found {
			t.Fatal("not found")
		}
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per call", allocs)
	}
	ext := map[string]string{ExtScopes: "patients:read, forms:*", ExtOrgRequired: "true"}
	allocs = testing.AllocsPerRun(100, func() {
		if m, err := p.Match("GET", "/api/v1/anything", ext); err != nil || len(m.Scopes) != 2 {
			t.Fatal(m, err)
		}
	})
	if allocs != 0 {
		t.Errorf("Match with cached extensions allocates %v times per call", allocs)
	}
	have, needed := []string{"forms:read", "patients:*"}, []string{"patients:read", "forms:read"}
	if allocs := testing.AllocsPerRun(100, func() { p.Missing(have, needed) }); allocs != 0 {
		t.Errorf("Missing allocates %v times per call", allocs)
	}
}

func BenchmarkMatchWithExtensions(b *testing.B) {
	p := benchPolicy(b)
	ext := map[string]string{ExtScopes: "patients:read, forms:*", ExtOrgRequired: "true"}
	b.ReportAllocs()
	for b.Loop() {
		if m, err := p.Match("GET", "/api/v1/submissions/8c1e7d4a", ext); err != nil || len(m.Scopes) != 2 {
			b.Fatal(m, err)
		}
	}
}

func BenchmarkMissing(b *testing.B) {
	p := benchPolicy(b)
	have := []string{"forms:read", "appointments:*", "invoices:list", "patients:*", "submissions:read"}
	needed := []string{"patients:read", "patients:write", "submissions:read"}
	b.ReportAllocs()
	for b.Loop() {
		if s, miss := p.Missing(have, needed); miss {
			b.Fatal(s)
		}
	}
}

func BenchmarkEffective(b *testing.B) {
	p := benchPolicy(b)
	var key, grant []string
	for i := range 10 {
		key = append(key, fmt.Sprintf("res%d:read", i), fmt.Sprintf("res%d:write", i))
		grant = append(grant, fmt.Sprintf("res%d:*", i*2))
	}
	b.ReportAllocs()
	for b.Loop() {
		if e := p.Effective(key, grant); len(e) != 10 {
			b.Fatal(e)
		}
	}
}

func BenchmarkAppendEffective(b *testing.B) {
	p := benchPolicy(b)
	var key, grant []string
	for i := range 10 {
		key = append(key, fmt.Sprintf("res%d:read", i), fmt.Sprintf("res%d:write", i))
		grant = append(grant, fmt.Sprintf("res%d:*", i*2))
	}
	buf := make([]string, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		if buf = p.AppendEffective(buf[:0], key, grant); len(buf) != 10 {
			b.Fatal(buf)
		}
	}
}
