package sso

import (
	"log/slog"
	"slices"
	"strings"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store"
)

// Identity is who signed in: the provider's subject, email and name, the
// values of the roles claim, and the role they map to.
type Identity struct {
	Subject string
	// Email is the email claim, left empty when the provider says it is
	// not verified (email_verified: false): the audit log must not name
	// someone by an address they have not shown they own.
	Email  string
	Name   string
	Groups []string
	Role   admin.Role
}

// ActorName is how the audit log names the user: the email, else the
// subject.
func (id Identity) ActorName() string {
	if id.Email != "" {
		return id.Email
	}
	return id.Subject
}

// Principal is the operator id signs in as, audited as {type: "oidc",
// name: ActorName}.
func (id Identity) Principal() admin.Principal {
	return admin.Principal{Actor: store.Actor{Type: store.ActorOIDC, Name: id.ActorName()}, Role: id.Role}
}

// LogValue logs the identity; it holds nothing secret.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("subject", id.Subject), slog.String("email", id.Email),
		slog.String("role", string(id.Role)), slog.Any("groups", id.Groups))
}

// claimValues reads the roles claim: a top-level claim of that name (which
// may itself hold dots, as Auth0's namespaced "https://example.com/roles"
// do), else a path through nested objects ("realm_access.roles",
// "resource_access.keygate.roles"). A string is one value; an array gives
// its strings. ok is false when the claim is absent.
func claimValues(claims map[string]any, name string) (vals []string, ok bool) {
	v, ok := claims[name]
	if !ok && strings.Contains(name, ".") {
		var cur any = claims
		for part := range strings.SplitSeq(name, ".") {
			obj, isObj := cur.(map[string]any)
			if !isObj {
				return nil, false
			}
			if cur, ok = obj[part]; !ok {
				return nil, false
			}
		}
		v = cur
	}
	if !ok {
		return nil, false
	}
	switch v := v.(type) {
	case string:
		return []string{v}, true
	case []any:
		for _, e := range v {
			if s, isStr := e.(string); isStr {
				vals = append(vals, s)
			}
		}
		return vals, true
	case []string:
		return v, true
	}
	return nil, true
}

// mapRole returns the role groups give: admin if any group is an admin
// group, else viewer if any is a viewer group; ok is false for neither.
func mapRole(roles map[admin.Role][]string, groups []string) (admin.Role, bool) {
	for _, role := range []admin.Role{admin.RoleAdmin, admin.RoleViewer} {
		for _, g := range roles[role] {
			if slices.Contains(groups, g) {
				return role, true
			}
		}
	}
	return "", false
}

// stringClaim returns claims[name] when it is a string.
func stringClaim(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// emailOf returns the email claim unless email_verified is false (a
// bool, or the string "false" some providers send).
func emailOf(claims map[string]any) string {
	switch v := claims["email_verified"].(type) {
	case bool:
		if !v {
			return ""
		}
	case string:
		if v == "false" {
			return ""
		}
	}
	return stringClaim(claims, "email")
}
