package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/sso"
)

func TestConsoleOIDC(t *testing.T) {
	file := `console:
  oidc:
    issuer: https://login.example.com/realms/ops
    client_id: keygate
    client_secret_env: KEYGATE_OIDC_SECRET
    redirect_url: https://keygate.example.com/console/oidc/callback
    scopes: [openid, email, groups]
    roles_claim: realm_access.roles
    roles:
      admin: [platform-admins]
      viewer: [sre, support]
`
	cfg, err := Load(writeFile(t, file), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, on := cfg.ConsoleOIDC()
	want := sso.Config{Issuer: "https://login.example.com/realms/ops", ClientID: "keygate", ClientSecretEnv: "KEYGATE_OIDC_SECRET",
		RedirectURL: "https://keygate.example.com/console/oidc/callback", Scopes: []string{"openid", "email", "groups"},
		RolesClaim: "realm_access.roles", Roles: map[admin.Role][]string{admin.RoleAdmin: {"platform-admins"}, admin.RoleViewer: {"sre", "support"}}}
	if !on || !reflect.DeepEqual(got, want) {
		t.Errorf("ConsoleOIDC() = %+v, %v\nwant %+v", got, on, want)
	}

	cfg, err = Load("", envOf(map[string]string{
		"KEYGATE_CONSOLE_OIDC_ISSUER":        "http://127.0.0.1:5556/dex",
		"KEYGATE_CONSOLE_OIDC_CLIENT_ID":     "kg",
		"KEYGATE_CONSOLE_OIDC_CLIENT_SECRET": "s3cret",
		"KEYGATE_CONSOLE_OIDC_SCOPES":        "[openid, groups]",
		"KEYGATE_CONSOLE_OIDC_ROLES":         "{viewer: [everyone]}",
	}))
	if err != nil {
		t.Fatal(err)
	}
	got, on = cfg.ConsoleOIDC()
	if !on || got.Issuer != "http://127.0.0.1:5556/dex" || got.ClientID != "kg" || got.ClientSecret != "s3cret" ||
		!slices.Equal(got.Scopes, []string{"openid", "groups"}) || !slices.Equal(got.Roles[admin.RoleViewer], []string{"everyone"}) {
		t.Errorf("from the environment: %+v", got)
	}

	def := Default()
	if _, on := def.ConsoleOIDC(); on {
		t.Error("single sign-on is on by default")
	}
}

func TestConsoleOIDCErrors(t *testing.T) {
	base := "console:\n  oidc:\n    issuer: https://login.example.com\n    client_id: kg\n    roles: {admin: [ops]}\n"
	cases := []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"http issuer", strings.Replace(base, "https://login.example.com", "http://login.example.com", 1), nil, "console.oidc.issuer: \"http://login.example.com\" must be https (http only on loopback)"},
		{"no issuer", "console:\n  oidc:\n    client_id: kg\n    roles: {admin: [ops]}\n", nil, "console.oidc.issuer: required"},
		{"no client id", strings.Replace(base, "client_id: kg", "client_id: ''", 1), nil, "console.oidc.client_id: required"},
		{"no roles", strings.Replace(base, "roles: {admin: [ops]}", "roles_claim: groups", 1), nil, "console.oidc.roles: map at least one group"},
		{"portal role", strings.Replace(base, "admin: [ops]", "portal: [ops]", 1), nil, "console.oidc.roles: \"portal\" is not admin or viewer"},
		{"both secrets", base + "    client_secret: a\n    client_secret_env: B\n", nil, "console.oidc.client_secret: set client_secret or client_secret_env, not both"},
		{"bad redirect", base + "    redirect_url: https://kg.example.com/oidc\n", nil, "console.oidc.redirect_url:"},
		{"no openid scope", base + "    scopes: [email]\n", nil, "console.oidc.scopes: must include openid"},
		{"misspelt field", base + "    client_secret_evn: X\n", nil, "console.oidc.client_secret_evn: unknown field; did you mean client_secret_env?"},
		{"roles not a map", "", map[string]string{"KEYGATE_CONSOLE_OIDC_ROLES": "[admin]"}, "KEYGATE_CONSOLE_OIDC_ROLES"},
		{"env issuer alone", "", map[string]string{"KEYGATE_CONSOLE_OIDC_ISSUER": "https://login.example.com"}, "console.oidc.client_id: required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = writeFile(t, c.file)
			}
			_, err := Load(path, envOf(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, c.want)
			}
		})
	}
}
