package config

import (
	"reflect"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/sso"
)

// Console is the operator console on the main HTTP listener.
type Console struct {
	OIDC ConsoleOIDC `yaml:"oidc"`
}

// ConsoleOIDC signs operators in with an OpenID Connect identity
// provider; an empty section (no issuer) leaves single sign-on off.
type ConsoleOIDC struct {
	Issuer          string   `yaml:"issuer"`
	ClientID        string   `yaml:"client_id"`
	ClientSecret    string   `yaml:"client_secret"`
	ClientSecretEnv string   `yaml:"client_secret_env"`
	RedirectURL     string   `yaml:"redirect_url"` // empty: the console's own URL + /console/oidc/callback
	Scopes          []string `yaml:"scopes"`       // empty: openid email profile
	RolesClaim      string   `yaml:"roles_claim"`  // empty: groups
	// Roles maps admin and viewer to the groups (values of the roles
	// claim) that get them.
	Roles map[string][]string `yaml:"roles"`
}

// ConsoleOIDC returns single sign-on's configuration in the sso
// package's terms, and whether it is on (any field of console.oidc set).
// Its client secret, when secret_env names it, is read by sso.New.
func (c *Config) ConsoleOIDC() (sso.Config, bool) {
	o := c.Console.OIDC
	if reflect.ValueOf(o).IsZero() {
		return sso.Config{}, false
	}
	roles := make(map[admin.Role][]string, len(o.Roles))
	for r, groups := range o.Roles {
		roles[admin.Role(r)] = groups
	}
	return sso.Config{
		Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, ClientSecretEnv: o.ClientSecretEnv,
		RedirectURL: o.RedirectURL, Scopes: o.Scopes, RolesClaim: o.RolesClaim, Roles: roles,
	}, true
}

// consoleErrors checks console.oidc, when set.
func (c *Config) consoleErrors() error {
	cfg, on := c.ConsoleOIDC()
	if !on {
		return nil
	}
	_, err := cfg.Check("console.oidc", nil)
	return err
}
