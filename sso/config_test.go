package sso

import (
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/keygate/keygate/admin"
)

func TestCheck(t *testing.T) {
	ok := Config{Issuer: "https://idp.example.com/realms/ops", ClientID: "keygate", Roles: map[admin.Role][]string{admin.RoleAdmin: {"ops"}}}
	env := map[string]string{"KG_OIDC_SECRET": "from-env"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		name string
		edit func(*Config)
		want []string // substrings of the error; none: valid
	}{
		{name: "valid", edit: func(*Config) {}},
		{name: "loopback http issuer", edit: func(c *Config) { c.Issuer = "http://127.0.0.1:5556/dex" }},
		{name: "localhost http issuer", edit: func(c *Config) { c.Issuer = "http://localhost:8080" }},
		{name: "http issuer elsewhere", edit: func(c *Config) { c.Issuer = "http://idp.example.com" }, want: []string{"console.oidc.issuer: \"http://idp.example.com\" must be https (http only on loopback)"}},
		{name: "no issuer", edit: func(c *Config) { c.Issuer = "" }, want: []string{"console.oidc.issuer: required"}},
		{name: "issuer with query", edit: func(c *Config) { c.Issuer = "https://idp.example.com/?x=1" }, want: []string{"console.oidc.issuer: \"https://idp.example.com/?x=1\" must not have a query"}},
		{name: "ftp issuer", edit: func(c *Config) { c.Issuer = "ftp://idp.example.com" }, want: []string{"console.oidc.issuer: \"ftp://idp.example.com\": the scheme must be https"}},
		{name: "no client id", edit: func(c *Config) { c.ClientID = " " }, want: []string{"console.oidc.client_id: required"}},
		{name: "both secrets", edit: func(c *Config) { c.ClientSecret, c.ClientSecretEnv = "x", "KG_OIDC_SECRET" }, want: []string{"console.oidc.client_secret: set client_secret or client_secret_env, not both"}},
		{name: "bad env name", edit: func(c *Config) { c.ClientSecretEnv = "1-bad" }, want: []string{"console.oidc.client_secret_env: \"1-bad\" is not an environment variable name"}},
		{name: "unset env", edit: func(c *Config) { c.ClientSecretEnv = "KG_NOT_SET" }, want: []string{"console.oidc.client_secret_env: $KG_NOT_SET is not set"}},
		{name: "env secret", edit: func(c *Config) { c.ClientSecretEnv = "KG_OIDC_SECRET" }},
		{name: "redirect without the callback path", edit: func(c *Config) { c.RedirectURL = "https://kg.example.com/callback" }, want: []string{"console.oidc.redirect_url: \"https://kg.example.com/callback\" must end with /console/oidc/callback"}},
		{name: "http redirect elsewhere", edit: func(c *Config) { c.RedirectURL = "http://kg.example.com/console/oidc/callback" }, want: []string{"console.oidc.redirect_url:", "must be https"}},
		{name: "prefixed redirect", edit: func(c *Config) { c.RedirectURL = "https://example.com/kg/console/oidc/callback" }},
		{name: "scopes without openid", edit: func(c *Config) { c.Scopes = []string{"email"} }, want: []string{"console.oidc.scopes: must include openid"}},
		{name: "bad scope", edit: func(c *Config) { c.Scopes = []string{"openid", "a b"} }, want: []string{"console.oidc.scopes[1]: \"a b\" is not a scope"}},
		{name: "portal role", edit: func(c *Config) { c.Roles = map[admin.Role][]string{"portal": {"x"}, admin.RoleViewer: {"v"}} }, want: []string{"console.oidc.roles: \"portal\" is not admin or viewer"}},
		{name: "no groups", edit: func(c *Config) { c.Roles = map[admin.Role][]string{admin.RoleAdmin: {}} }, want: []string{"console.oidc.roles: map at least one group"}},
		{name: "empty group", edit: func(c *Config) { c.Roles = map[admin.Role][]string{admin.RoleViewer: {"ok", ""}} }, want: []string{"console.oidc.roles.viewer[1]: a group name is required"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			got, err := c.Check("console.oidc", lookup)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if got.RolesClaim != "groups" || !slices.Equal(got.Scopes, DefaultScopes()) && c.Scopes == nil {
					t.Errorf("defaults not applied: %+v", got)
				}
				if c.ClientSecretEnv != "" && got.ClientSecret != "from-env" {
					t.Errorf("secret from $%s not read: %q", c.ClientSecretEnv, got.ClientSecret)
				}
				return
			}
			if err == nil {
				t.Fatal("Check accepted it")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestClaimValues(t *testing.T) {
	var claims map[string]any
	if err := json.Unmarshal([]byte(`{
		"groups": ["a", "b", 3],
		"role": "admins",
		"https://example.com/roles": ["ns"],
		"realm_access": {"roles": ["r1"]},
		"resource_access": {"keygate": {"roles": ["c1", "c2"]}},
		"weird": {"roles": 5},
		"flat": "x"
	}`), &claims); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		want   []string
		wantOK bool
	}{
		{"groups", []string{"a", "b"}, true},
		{"role", []string{"admins"}, true},
		{"https://example.com/roles", []string{"ns"}, true},
		{"realm_access.roles", []string{"r1"}, true},
		{"resource_access.keygate.roles", []string{"c1", "c2"}, true},
		{"weird.roles", nil, true},
		{"flat.roles", nil, false},
		{"realm_access.missing", nil, false},
		{"missing", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := claimValues(claims, tc.name)
			if ok != tc.wantOK || !slices.Equal(got, tc.want) {
				t.Errorf("claimValues(%q) = %v, %v; want %v, %v", tc.name, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestMapRole(t *testing.T) {
	roles := map[admin.Role][]string{admin.RoleAdmin: {"ops", "root"}, admin.RoleViewer: {"dev"}}
	tests := []struct {
		name   string
		groups []string
		want   admin.Role
		ok     bool
	}{
		{"admin", []string{"ops"}, admin.RoleAdmin, true},
		{"second admin group", []string{"x", "root"}, admin.RoleAdmin, true},
		{"viewer", []string{"dev"}, admin.RoleViewer, true},
		{"admin wins", []string{"dev", "ops"}, admin.RoleAdmin, true},
		{"case matters", []string{"OPS"}, "", false},
		{"none", []string{"sales"}, "", false},
		{"empty", nil, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := mapRole(roles, tc.groups)
			if got != tc.want || ok != tc.ok {
				t.Errorf("mapRole(%v) = %q, %v; want %q, %v", tc.groups, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// FuzzOpen: no cookie value but one seal made opens, and each one seal
// makes opens to what was sealed.
func FuzzOpen(f *testing.F) {
	s, err := newSealer("secret")
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	// The seed is sealed with a fixed nonce, so that every fuzzing
	// process makes the same one.
	plain, _ := json.Marshal(state{State: "st", Nonce: "n", Verifier: "v", Redirect: "https://x/console/oidc/callback", Expires: now.Unix() + 60})
	nonce := make([]byte, s.aead.NonceSize())
	good := base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, []byte(CookieName)))
	f.Add(good, "st")
	f.Add("", "")
	f.Add("AAAA", "x")
	f.Fuzz(func(t *testing.T, value, st string) {
		if value != good {
			if _, err := s.open(value, now); err == nil {
				t.Fatalf("open accepted %q, which seal did not make", value)
			}
		}
		if st == "" || !utf8.ValidString(st) { // JSON keeps text, not bytes
			return
		}
		in := state{State: st, Nonce: st, Verifier: st, Redirect: st, Expires: now.Unix() + 1}
		v, err := s.seal(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.open(v, now)
		if err != nil || out != in {
			t.Fatalf("round trip: %+v, %v; want %+v", out, err, in)
		}
	})
}
