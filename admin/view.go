package admin

import (
	"time"

	"github.com/keygate/keygate/keys"
)

// KeyView is a key record as the CLI's --json and the admin API print it.
type KeyView struct {
	ID         string     `json:"id"`
	Key        string     `json:"key,omitempty"` // only at create and roll
	Prefix     string     `json:"prefix"`
	Last4      string     `json:"last4"`
	Tenant     string     `json:"tenant"`
	Name       string     `json:"name"`
	Env        keys.Env   `json:"env"`
	Scopes     []string   `json:"scopes"`
	Plan       string     `json:"plan"`
	Lineage    string     `json:"lineage"`
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RolledAt   *time.Time `json:"rolled_at,omitempty"`
	ReplacedBy string     `json:"replaced_by,omitempty"`
	Imported   bool       `json:"imported,omitempty"`
	// AllowedCIDRs is empty for a key usable from anywhere.
	AllowedCIDRs []string          `json:"allowed_cidrs"`
	Metadata     map[string]string `json:"metadata"`
}

// ViewKey renders a record at now.
func ViewKey(r keys.Record, now time.Time) KeyView {
	return KeyView{
		ID: r.ID, Prefix: r.Prefix, Last4: r.Last4, Tenant: r.Tenant, Name: r.Name, Env: r.Env,
		Scopes: nonNil(r.Scopes), Plan: r.Plan, Lineage: r.Lineage, Status: r.Status(now).String(),
		CreatedAt: r.CreatedAt, ExpiresAt: opt(r.ExpiresAt), RevokedAt: opt(r.RevokedAt),
		LastUsedAt: opt(r.LastUsedAt), RolledAt: opt(r.RolledAt), ReplacedBy: r.ReplacedBy, Imported: r.Imported,
		AllowedCIDRs: keys.FormatCIDRs(r.AllowedCIDRs), Metadata: nonNilMap(r.Metadata),
	}
}

// ViewCreated renders a new key with its secret.
func ViewCreated(c Created, now time.Time) KeyView {
	v := ViewKey(c.Record, now)
	v.Key = c.Key
	return v
}

// GrantView is a grant as printed.
type GrantView struct {
	Tenant    string    `json:"tenant"`
	Org       string    `json:"org"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// ViewGrant renders a grant.
func ViewGrant(g keys.Grant) GrantView {
	return GrantView{Tenant: g.Tenant, Org: g.Org, Scopes: nonNil(g.Scopes), CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt, Revoked: !g.Active()}
}

func opt(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
