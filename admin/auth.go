package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// ErrForbidden is wrapped by every refusal of an action the caller's role
// or session does not allow.
var ErrForbidden = errors.New("forbidden")

// Role is what an operator's admin token (or sign-in) may do.
type Role string

// Roles: admin does everything, viewer reads everything, portal may only
// open portal sessions (the platform's backend holds it).
const (
	RoleAdmin  Role = "admin"
	RoleViewer Role = "viewer"
	RolePortal Role = "portal"
)

// Roles lists the roles.
func Roles() []Role { return []Role{RoleAdmin, RoleViewer, RolePortal} }

// Permission is one kind of action. A portal session carries the ones the
// platform granted its user (keys:create, keys:revoke, keys:roll,
// usage:read, audit:read); keys:read is always granted.
type Permission string

// Permissions.
const (
	PermKeysRead       Permission = "keys:read"
	PermKeysCreate     Permission = "keys:create"
	PermKeysImport     Permission = "keys:import"
	PermKeysRevoke     Permission = "keys:revoke"
	PermKeysRoll       Permission = "keys:roll"
	PermKeysUpdate     Permission = "keys:update" // expiry, networks
	PermGrantsRead     Permission = "grants:read"
	PermGrantsWrite    Permission = "grants:write"
	PermAuditRead      Permission = "audit:read"
	PermUsageRead      Permission = "usage:read"
	PermPortalSessions Permission = "portal:sessions"
)

// PortalPermissions are the permissions a portal session may be given.
func PortalPermissions() []Permission {
	return []Permission{PermKeysCreate, PermKeysRevoke, PermKeysRoll, PermUsageRead, PermAuditRead}
}

var rolePerms = map[Role][]Permission{
	RoleAdmin: {PermKeysRead, PermKeysCreate, PermKeysImport, PermKeysRevoke, PermKeysRoll, PermKeysUpdate,
		PermGrantsRead, PermGrantsWrite, PermAuditRead, PermUsageRead, PermPortalSessions},
	RoleViewer: {PermKeysRead, PermGrantsRead, PermAuditRead, PermUsageRead},
	RolePortal: {PermPortalSessions},
}

// Principal is who calls the service: an operator with a role (admin
// token, CLI, console sign-in) or a tenant's user in a portal session,
// who sees one tenant only and may do what the session allows.
type Principal struct {
	Actor store.Actor
	Role  Role // an operator's role; empty for a portal session
	// Tenant, for a portal session, is the one tenant it may see; its keys
	// of any other tenant do not exist for it.
	Tenant string
	Perms  []Permission // a portal session's; operators' come from Role
	// Envs and Scopes bound the keys a portal session may create.
	Envs   []keys.Env
	Scopes []string
}

// Can reports whether p may do perm.
func (p Principal) Can(perm Permission) bool {
	if p.Tenant != "" {
		return perm == PermKeysRead || slices.Contains(p.Perms, perm)
	}
	return slices.Contains(rolePerms[p.Role], perm)
}

// sees reports whether p may see tenant's keys, grants and events.
func (p Principal) sees(tenant string) bool { return p.Tenant == "" || p.Tenant == tenant }

// describe names p in a refusal: "token ci (role viewer)".
func (p Principal) describe() string {
	switch {
	case p.Tenant != "":
		return fmt.Sprintf("portal user %s", p.Actor.Name)
	case p.Actor.Type == store.ActorAdminToken:
		return fmt.Sprintf("token %s (role %s)", p.Actor.Name, p.Role)
	}
	return fmt.Sprintf("%s %s (role %s)", p.Actor.Type, p.Actor.Name, p.Role)
}

// System is Keygate acting for itself (and tests and tools that call the
// service in process without a caller): an admin.
var System = Principal{Actor: store.Actor{Type: store.ActorSystem, Name: "keygate"}, Role: RoleAdmin}

type principalKey struct{}

// WithCaller returns ctx carrying p as the caller of the service's
// methods, and the origin its changes are audited with: p's actor, the
// client's address and the request's id (empty when not over HTTP).
func WithCaller(ctx context.Context, p Principal, sourceIP, requestID string) context.Context {
	ctx = context.WithValue(ctx, principalKey{}, p)
	return store.WithOrigin(ctx, store.Origin{Actor: p.Actor, SourceIP: sourceIP, RequestID: requestID})
}

// CallerOf returns the caller ctx carries; without one, System: only code
// in this process calls the service without going through an
// authenticating front (admin API, console, portal, CLI).
func CallerOf(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p
	}
	return System
}

// allow checks that the caller may do perm, and returns it.
func allow(ctx context.Context, perm Permission, what string) (Principal, error) {
	p := CallerOf(ctx)
	if !p.Can(perm) {
		return p, fmt.Errorf("%w: %s may not %s", ErrForbidden, p.describe(), what)
	}
	return p, nil
}

// allowTenant checks perm and that the caller sees tenant: a tenant it may
// not see is reported as not found, so that a portal user cannot tell
// another tenant's key from one that does not exist.
func allowTenant(ctx context.Context, perm Permission, what, tenant, subject string) (Principal, error) {
	p, err := allow(ctx, perm, what)
	if err != nil {
		return p, err
	}
	if !p.sees(tenant) {
		return p, fmt.Errorf("%s %w", subject, store.ErrNotFound)
	}
	return p, nil
}

// Token is one admin token as the server knows it: the SHA-256 of the
// token (never the token), its name and role.
type Token struct {
	Name   string
	SHA256 [sha256.Size]byte
	Role   Role
}

// TokenConfig is one admin token as configured.
type TokenConfig struct {
	Name, SHA256, Role string
}

// Tokens holds the admin tokens and authenticates bearers.
type Tokens struct{ list []Token }

// DefaultTokenName names the token of admin.token (KEYGATE_ADMIN_TOKEN).
const DefaultTokenName = "default"

// NewTokens checks the configured tokens: each with a name (letters,
// digits, '.', '_', '-'; unique), a SHA-256 of 64 hex digits and a known
// role. plain, if set, is admin.token: it becomes the admin token named
// "default". Errors name the config field (admin.tokens[1].sha256).
func NewTokens(plain string, cfg []TokenConfig) (*Tokens, error) {
	t := &Tokens{}
	var errs []error
	names := map[string]bool{}
	if plain != "" {
		t.list = append(t.list, Token{Name: DefaultTokenName, SHA256: sha256.Sum256([]byte(plain)), Role: RoleAdmin})
		names[DefaultTokenName] = true
	}
	for i, c := range cfg {
		field := fmt.Sprintf("admin.tokens[%d]", i)
		tok := Token{Name: c.Name, Role: Role(c.Role)}
		switch {
		case !tokenNameRE.MatchString(c.Name):
			errs = append(errs, fmt.Errorf("%s.name: %q must be 1-64 letters, digits, '.', '_' or '-'", field, c.Name))
		case names[c.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice (admin.token is named %q)", field, c.Name, DefaultTokenName))
		}
		names[c.Name] = true
		if b, err := hex.DecodeString(c.SHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("%s.sha256: must be the token's SHA-256 in 64 hex digits (keygate admin-token new prints it)", field))
		} else {
			copy(tok.SHA256[:], b)
		}
		if !slices.Contains(Roles(), tok.Role) {
			errs = append(errs, fmt.Errorf("%s.role: %q is not admin, viewer or portal", field, c.Role))
		}
		t.list = append(t.list, tok)
	}
	return t, errors.Join(errs...)
}

// Empty reports whether no token is configured (the admin API is off).
func (t *Tokens) Empty() bool { return t == nil || len(t.list) == 0 }

// Authenticate returns the token whose SHA-256 is the bearer's. Every
// configured token is compared, in constant time, whichever matches, so
// that timing tells nothing of which exist.
func (t *Tokens) Authenticate(bearer string) (Token, bool) {
	sum := sha256.Sum256([]byte(bearer))
	var found Token
	ok := 0
	for _, tok := range t.list {
		if subtle.ConstantTimeCompare(sum[:], tok.SHA256[:]) == 1 {
			found, ok = tok, 1
		}
	}
	return found, ok == 1 && bearer != ""
}

// Principal is the caller a token authenticates.
func (tok Token) Principal() Principal {
	return Principal{Actor: store.Actor{Type: store.ActorAdminToken, Name: tok.Name}, Role: tok.Role}
}

// AdminTokenPrefix starts every token NewAdminToken makes, so that a
// leaked one is recognisable.
const AdminTokenPrefix = "kgadm_"

// NewAdminToken returns a fresh admin token (256 bits from crypto/rand)
// and the SHA-256 that the config holds for it.
func NewAdminToken() (token, sum string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("reading crypto/rand: %w", err)
	}
	token = AdminTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	s := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(s[:]), nil
}

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// bounds checks a key a portal session asks for against what the session
// allows: one of its envs, scopes among its scopes. Operators are bound by
// the config's rules only.
func (p Principal) bounds(env keys.Env, scopes []string, plan string) error {
	if p.Tenant == "" {
		return nil
	}
	if len(p.Envs) > 0 && !slices.Contains(p.Envs, env) {
		return fmt.Errorf("%w: %s may not create %s keys", ErrForbidden, p.describe(), env)
	}
	for i, sc := range scopes {
		if !slices.Contains(p.Scopes, sc) {
			return invalid(fmt.Sprintf("scopes[%d]", i), "%q is not among the scopes this session may grant (%s)", sc, strings.Join(p.Scopes, ", "))
		}
	}
	if plan != "" {
		return invalid("plan", "a portal session cannot choose a plan")
	}
	return nil
}

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.TrimSpace(s))
	if !slices.Contains(Roles(), r) {
		return "", fmt.Errorf("%w: role: %q is not admin, viewer or portal", ErrInvalid, s)
	}
	return r, nil
}
