package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// PortalConfig says where tenants' users reach the portal and how long
// its codes and sessions last.
type PortalConfig struct {
	PublicURL  string        // e.g. https://keys.example.com; links are PublicURL + /portal/session/<code>
	CodeTTL    time.Duration // a link's code, single use (0: 15 minutes)
	SessionTTL time.Duration // the session a code starts (0: 1 hour)
}

// ConsoleSessionTTL is how long an operator's console session lasts.
const ConsoleSessionTTL = 8 * time.Hour

// ConsoleLinkTTL is how long the one-time console link printed by
// `keygate serve` (with no admin token) may be used.
const ConsoleLinkTTL = time.Hour

// Session tokens are an id (16 random bytes) and a secret (32 random
// bytes), each in unpadded base64url, one after the other: the key
// database finds the session by the id and compares the SHA-256 of the
// secret in constant time, and keeps neither secret nor token.
const (
	tokenIDLen     = 22 // base64url of 16 bytes
	tokenSecretLen = 43 // base64url of 32 bytes
	tokenLen       = tokenIDLen + tokenSecretLen
)

func newSessionToken() (id, token string, sum [32]byte, err error) {
	var b [48]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", sum, fmt.Errorf("reading crypto/rand: %w", err)
	}
	id = base64.RawURLEncoding.EncodeToString(b[:16])
	secret := base64.RawURLEncoding.EncodeToString(b[16:])
	return id, id + secret, sha256.Sum256([]byte(secret)), nil
}

// splitToken takes a token apart; ok is false for anything not shaped
// like one (so a forged or truncated cookie never reaches the database).
func splitToken(token string) (id string, sum [32]byte, ok bool) {
	if len(token) != tokenLen {
		return "", sum, false
	}
	for _, c := range token {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return "", sum, false
		}
	}
	return token[:tokenIDLen], sha256.Sum256([]byte(token[tokenIDLen:])), true
}

// PortalSessionRequest is what a platform's backend asks for when it
// sends one of its users to the portal: POST /admin/v1/portal/sessions.
type PortalSessionRequest struct {
	Tenant      string   `json:"tenant"`
	User        string   `json:"user"`
	Permissions []string `json:"permissions"`
	Envs        []string `json:"envs"`
	Scopes      []string `json:"scopes"`
	ReturnURL   string   `json:"return_url"`
}

// PortalLink is the single-use link to the portal the user follows.
type PortalLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PortalSession is a tenant's user in the portal: who, which tenant, and
// what the platform allowed.
type PortalSession struct {
	Tenant      string       `json:"tenant"`
	User        string       `json:"user"`
	Permissions []Permission `json:"permissions"`
	Envs        []keys.Env   `json:"envs"`
	Scopes      []string     `json:"scopes"`
	ReturnURL   string       `json:"return_url,omitempty"`
	ExpiresAt   time.Time    `json:"-"`
}

// Principal is the caller the session makes: its user, seeing its tenant
// only, with its permissions and bounds.
func (ps PortalSession) Principal() Principal {
	return Principal{Actor: store.Actor{Type: store.ActorPortal, Name: ps.User}, Tenant: ps.Tenant,
		Perms: ps.Permissions, Envs: ps.Envs, Scopes: ps.Scopes}
}

// OpenPortalSession checks r and returns a single-use link that starts a
// portal session for r.User in r.Tenant. Roles admin and portal may.
func (s *Service) OpenPortalSession(ctx context.Context, r PortalSessionRequest) (PortalLink, error) {
	if _, err := allow(ctx, PermPortalSessions, "open portal sessions"); err != nil {
		return PortalLink{}, err
	}
	ps, err := s.portalSession(r)
	if err != nil {
		return PortalLink{}, err
	}
	data, err := json.Marshal(ps)
	if err != nil {
		return PortalLink{}, err
	}
	id, code, sum, err := newSessionToken()
	if err != nil {
		return PortalLink{}, err
	}
	now := s.cfg.Now().UTC()
	exp := now.Add(s.cfg.Portal.CodeTTL)
	if err := s.db.PutSession(ctx, store.Session{ID: id, Kind: store.SessionPortalCode, SecretHash: sum, Data: data,
		CreatedAt: now, ExpiresAt: exp}); err != nil {
		return PortalLink{}, err
	}
	return PortalLink{URL: strings.TrimSuffix(s.cfg.Portal.PublicURL, "/") + "/portal/session/" + code, ExpiresAt: exp.Truncate(time.Second)}, nil
}

// portalSession validates a request, naming the field at fault.
func (s *Service) portalSession(r PortalSessionRequest) (PortalSession, error) {
	ps := PortalSession{Tenant: r.Tenant, User: r.User, Permissions: []Permission{}, Envs: []keys.Env{}, Scopes: nonNil(r.Scopes)}
	if err := s.validateCommon(r.Tenant, "", r.Scopes, ""); err != nil {
		return ps, err
	}
	switch {
	case strings.TrimSpace(r.User) == "":
		return ps, invalid("user", "required: who the platform signed in (shown in the audit log)")
	case len(r.User) > 200:
		return ps, invalid("user", "longer than 200 characters")
	case strings.ContainsFunc(r.User, unicode.IsControl):
		return ps, invalid("user", "contains control characters")
	}
	allowed := PortalPermissions()
	for i, p := range r.Permissions {
		perm := Permission(p)
		switch {
		case perm == PermKeysRead: // always granted
		case !slices.Contains(allowed, perm):
			names := make([]string, len(allowed))
			for j, a := range allowed {
				names[j] = string(a)
			}
			return ps, invalid(fmt.Sprintf("permissions[%d]", i), "%q is not one of %s", p, strings.Join(names, ", "))
		case !slices.Contains(ps.Permissions, perm):
			ps.Permissions = append(ps.Permissions, perm)
		}
	}
	for i, e := range r.Envs {
		env := keys.Env(e)
		if !env.Valid() {
			return ps, invalid(fmt.Sprintf("envs[%d]", i), "%q is not test or live", e)
		}
		if _, ok := s.cfg.Formats.ForEnv(env); !ok {
			return ps, invalid(fmt.Sprintf("envs[%d]", i), "no key format is configured for %s keys", e)
		}
		if !slices.Contains(ps.Envs, env) {
			ps.Envs = append(ps.Envs, env)
		}
	}
	if len(ps.Envs) == 0 { // none given: every env configured
		for _, env := range []keys.Env{keys.EnvTest, keys.EnvLive} {
			if _, ok := s.cfg.Formats.ForEnv(env); ok {
				ps.Envs = append(ps.Envs, env)
			}
		}
	}
	if r.ReturnURL != "" {
		if err := ValidReturnURL(r.ReturnURL); err != nil {
			return ps, invalid("return_url", "%v", err)
		}
		ps.ReturnURL = r.ReturnURL
	}
	return ps, nil
}

// ValidReturnURL accepts an absolute http or https URL with a host and
// no user info: the portal links to it, so anything else (javascript:,
// data:) could run in its page.
func ValidReturnURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case len(s) > 2048:
		return fmt.Errorf("longer than 2048 characters")
	case err != nil:
		return fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q must be an http or https URL", s)
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return fmt.Errorf("%q must not carry a user name or password", s)
	}
	return nil
}

// RedeemPortalCode turns a link's code into a portal session: the code is
// deleted as it is read, so a second use, like an unknown or expired code,
// is store.ErrNotFound. It returns the session's token, for the cookie.
func (s *Service) RedeemPortalCode(ctx context.Context, code string) (token string, ps PortalSession, err error) {
	id, sum, ok := splitToken(code)
	if !ok {
		return "", ps, fmt.Errorf("portal code %w", store.ErrNotFound)
	}
	now := s.cfg.Now().UTC()
	c, err := s.db.TakeSession(ctx, store.SessionPortalCode, id, sum, now)
	if err != nil {
		return "", ps, err
	}
	if err := json.Unmarshal(c.Data, &ps); err != nil {
		return "", ps, fmt.Errorf("portal code: stored session: %w", err)
	}
	sid, token, ssum, err := newSessionToken()
	if err != nil {
		return "", ps, err
	}
	ps.ExpiresAt = now.Add(s.cfg.Portal.SessionTTL)
	if err := s.db.PutSession(ctx, store.Session{ID: sid, Kind: store.SessionPortal, SecretHash: ssum, Data: c.Data,
		CreatedAt: now, ExpiresAt: ps.ExpiresAt}); err != nil {
		return "", ps, err
	}
	return token, ps, nil
}

// PortalSessionOf returns the live portal session token opens;
// store.ErrNotFound for an unknown, forged, ended or expired one.
func (s *Service) PortalSessionOf(ctx context.Context, token string) (PortalSession, error) {
	var ps PortalSession
	st, err := s.session(ctx, store.SessionPortal, token)
	if err != nil {
		return ps, err
	}
	if err := json.Unmarshal(st.Data, &ps); err != nil {
		return ps, fmt.Errorf("portal session: %w", err)
	}
	ps.ExpiresAt = st.ExpiresAt
	return ps, nil
}

func (s *Service) session(ctx context.Context, kind, token string) (store.Session, error) {
	id, sum, ok := splitToken(token)
	if !ok {
		return store.Session{}, fmt.Errorf("session %w", store.ErrNotFound)
	}
	return s.db.Session(ctx, kind, id, sum, s.cfg.Now().UTC())
}

// EndSession ends the session of kind (store.SessionPortal,
// store.SessionConsole) that token opens; an unknown token is no error.
func (s *Service) EndSession(ctx context.Context, kind, token string) error {
	id, _, ok := splitToken(token)
	if !ok {
		return nil
	}
	if _, err := s.session(ctx, kind, token); err != nil {
		return nil // only the holder of a session's secret may end it
	}
	return s.db.DeleteSession(ctx, kind, id)
}
