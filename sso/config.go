package sso

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/httpurl"
)

// Paths the console serves sign-in on. A configured redirect URL must end
// with CallbackPath; behind a proxy that adds a prefix, the prefix comes
// before it ("https://example.com/keygate/console/oidc/callback").
const (
	LoginPath    = "/console/oidc/login"
	CallbackPath = "/console/oidc/callback"
)

// Defaults.
const (
	DefaultRolesClaim = "groups"
	// StateTTL bounds a sign-in: the state cookie Begin sets expires after
	// it, so a half-finished login cannot be completed later.
	StateTTL = 10 * time.Minute
	// discoveryRetry spaces the tries to reach an identity provider that
	// was down, so that a burst of logins does not become a burst of
	// discovery requests.
	discoveryRetry = 5 * time.Second
	httpTimeout    = 10 * time.Second
)

// DefaultScopes are requested when Config.Scopes is empty. "groups" is
// not among them: Google refuses it, and Keycloak and Azure AD send
// groups through a mapper rather than a scope; Okta and Dex need it added.
func DefaultScopes() []string { return []string{"openid", "email", "profile"} }

// Config is how Keygate signs operators in with an OpenID Connect
// identity provider.
type Config struct {
	// Issuer is the provider's issuer URL; its discovery document is at
	// Issuer + "/.well-known/openid-configuration". https, except on
	// loopback.
	Issuer   string
	ClientID string
	// ClientSecret, or the variable ClientSecretEnv names, is the client's
	// secret; neither makes a public client, which PKCE alone protects.
	ClientSecret    string
	ClientSecretEnv string
	// RedirectURL is where the provider sends the browser back, ending in
	// CallbackPath. Empty: the URL the browser used to reach Begin, with
	// CallbackPath (register that one with the provider).
	RedirectURL string
	Scopes      []string // empty: DefaultScopes
	// RolesClaim names the claim holding the user's groups or roles: a
	// top-level claim ("groups", "https://example.com/roles") or a path
	// through nested objects ("realm_access.roles").
	RolesClaim string
	// Roles maps a role (admin or viewer) to the groups that get it. A
	// user in groups of both is an admin; in none, refused.
	Roles map[admin.Role][]string

	Client *http.Client     // nil: one with a 10 s timeout
	Log    *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // nil: time.Now
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Check validates c, naming each bad field by its path under field
// ("console.oidc.issuer"), and returns c with its defaults applied. With
// lookup nil it checks only that ClientSecretEnv names a variable; with
// one (os.LookupEnv in the server) it reads the secret into ClientSecret.
func (c Config) Check(field string, lookup func(string) (string, bool)) (Config, error) {
	var errs []error
	bad := func(sub, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", field, sub, fmt.Sprintf(format, a...)))
	}
	if err := checkURL(c.Issuer); err != nil {
		bad("issuer", "%v", err)
	} else if u, _ := url.Parse(c.Issuer); u.RawQuery != "" || u.Fragment != "" {
		bad("issuer", "%q must not have a query or fragment", c.Issuer)
	}
	if strings.TrimSpace(c.ClientID) == "" {
		bad("client_id", "required: the client id the identity provider gave Keygate")
	}
	switch {
	case c.ClientSecret != "" && c.ClientSecretEnv != "":
		bad("client_secret", "set client_secret or client_secret_env, not both")
	case c.ClientSecretEnv == "":
	case !envNameRE.MatchString(c.ClientSecretEnv):
		bad("client_secret_env", "%q is not an environment variable name", c.ClientSecretEnv)
	case lookup != nil:
		v, ok := lookup(c.ClientSecretEnv)
		if !ok || v == "" {
			bad("client_secret_env", "$%s is not set", c.ClientSecretEnv)
		}
		c.ClientSecret = v
	}
	if c.RedirectURL != "" {
		if err := checkURL(c.RedirectURL); err != nil {
			bad("redirect_url", "%v", err)
		} else if u, _ := url.Parse(c.RedirectURL); !strings.HasSuffix(u.Path, CallbackPath) || u.RawQuery != "" || u.Fragment != "" {
			bad("redirect_url", "%q must end with %s (where Keygate answers the provider), without a query", c.RedirectURL, CallbackPath)
		}
	}
	if len(c.Scopes) == 0 {
		c.Scopes = DefaultScopes()
	}
	for i, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			bad(fmt.Sprintf("scopes[%d]", i), "%q is not a scope", s)
		}
	}
	if !slices.Contains(c.Scopes, "openid") {
		bad("scopes", "must include openid")
	}
	if c.RolesClaim == "" {
		c.RolesClaim = DefaultRolesClaim
	}
	groups := 0
	for _, role := range sortedRoles(c.Roles) {
		if role != admin.RoleAdmin && role != admin.RoleViewer {
			bad("roles", "%q is not admin or viewer", role)
			continue
		}
		for i, g := range c.Roles[role] {
			if strings.TrimSpace(g) == "" {
				bad(fmt.Sprintf("roles.%s[%d]", role, i), "a group name is required")
			}
			groups++
		}
	}
	if groups == 0 {
		bad("roles", "map at least one group to admin or viewer, e.g. {admin: [keygate-admins]}: without one nobody can sign in")
	}
	return c, errors.Join(errs...)
}

// checkURL accepts an absolute http(s) URL: https, or http on a loopback
// host (a provider or a console on this machine).
func checkURL(s string) error {
	u, err := httpurl.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme == "http" && !loopback(u.Hostname()) {
		return fmt.Errorf("%q must be https (http only on loopback)", s)
	}
	return nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func sortedRoles(m map[admin.Role][]string) []admin.Role {
	out := make([]admin.Role, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}
