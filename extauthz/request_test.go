package extauthz

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

func TestBearer(t *testing.T) {
	cases := []struct {
		in, tok string
		ok      bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER\tabc", "abc", true},
		{"Bearer   abc  ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearerabc", "", false},
		{"Basic abc", "", false},
		{"Bearer a b", "", false},
		{"Bearer a,b", "", false},
		{"", "", false},
		{"Bear", "", false},
	}
	for _, c := range cases {
		tok, ok := bearer(c.in)
		if tok != c.tok || ok != c.ok {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", c.in, tok, ok, c.tok, c.ok)
		}
	}
}

// FuzzBearer: an accepted token is one non-empty word, and putting it back
// after "Bearer " gives it again.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer sk_live_abc", "bearer x", "Basic y", "Bearer", "Bearer a b", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, ok := bearer(v)
		if !ok {
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t,") {
			t.Fatalf("bearer(%q) accepted %q", v, tok)
		}
		if again, ok := bearer("Bearer " + tok); !ok || again != tok {
			t.Fatalf("round trip of %q: %q %v", tok, again, ok)
		}
	})
}

// FuzzRequestMapping: whatever headers arrive, in either form Envoy sends
// them, the mapping never panics, counts a repeated authorization or
// organization header as repeated, and strips only reserved headers it does
// not set itself.
func FuzzRequestMapping(f *testing.F) {
	f.Add("authorization", "Bearer a", "x-organization-id", "org-1", true)
	f.Add("Authorization", "Bearer a,Bearer b", "x-keygate-tenant", "evil", false)
	f.Add("x-keygate-x", "\xff", "x-request-id", "", true)
	n := &headerNames{auth: "authorization", org: "x-organization-id", injected: map[string]bool{"x-keygate-tenant": true}}
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, raw bool) {
		h := &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/"}
		if raw {
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: k1, RawValue: []byte(v1)}, {Key: k2, RawValue: []byte(v2)}}}
		} else {
			h.Headers = map[string]string{strings.ToLower(k1): v1, strings.ToLower(k2): v2}
		}
		r := n.fromCheck(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}})
		for _, s := range r.Strip {
			if !strings.HasPrefix(s, reservedPrefix) || s == "x-keygate-tenant" {
				t.Fatalf("stripped %q", s)
			}
		}
		if raw && strings.EqualFold(k1, "authorization") && strings.EqualFold(k2, "authorization") && r.AuthCount < 2 {
			t.Fatalf("two authorization entries counted as %d", r.AuthCount)
		}
		if !raw && strings.EqualFold(k1, "authorization") && strings.Contains(v1, ",") && !strings.EqualFold(k2, "authorization") && r.AuthCount < 2 {
			t.Fatalf("comma-joined authorization counted as %d", r.AuthCount)
		}
	})
}
