package admin

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzSplitToken: whatever a cookie or a link holds, splitToken accepts
// only the shape newSessionToken makes, and never panics.
func FuzzSplitToken(f *testing.F) {
	_, tok, _, _ := newSessionToken()
	for _, s := range []string{tok, "", tok[:64], tok + "=", strings.Repeat("/", 65), "\x00" + tok[1:]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, _, ok := splitToken(s)
		if !ok {
			return
		}
		if len(s) != tokenLen || id != s[:tokenIDLen] || strings.ContainsAny(s, "/+=.%\x00") {
			t.Fatalf("accepted %q", s)
		}
	})
}

// FuzzReturnURL: an accepted return_url is an http or https URL with a
// host, so the portal's link cannot run script.
func FuzzReturnURL(f *testing.F) {
	for _, s := range []string{"https://app.acme.com/settings", "javascript:alert(1)", "//evil", "HTTPS://A", " http://x", "http://[::1]:80/", "data:text/html,x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidReturnURL(s) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			t.Fatalf("accepted %q", s)
		}
		if l := strings.ToLower(s); !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
			t.Fatalf("accepted %q, which a browser may not read as http(s)", s)
		}
	})
}
