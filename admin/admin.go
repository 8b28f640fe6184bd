// Package admin carries out the key and grant lifecycle — create, list,
// show, revoke, roll, import, expiry; set, list, revoke grants — and reads
// the audit log, with one set of validation rules and one authorization
// layer (auth.go) for every caller: the CLI, the admin API, the console
// and the portal.
package admin

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// ErrInvalid is wrapped by every validation error; its text names the field.
var ErrInvalid = errors.New("invalid request")

// ErrAlreadyRevoked is returned by Revoke for a key revoked before: a
// second revoke is reported, not silently accepted, so that whoever runs it
// learns that someone else got there first (the key is returned as stored).
var ErrAlreadyRevoked = errors.New("already revoked")

func invalid(field, format string, a ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, a...))
}

// Config is what the service validates against.
type Config struct {
	Formats *keys.Formats
	Hasher  *keys.Hasher
	Plans   []string // plan names the config defines
	// ValidScope checks one scope string in the deployment's scope form.
	ValidScope func(string) error
	Grace      time.Duration // default roll grace period
	Now        func() time.Time
	// Changed, if set, is called after every change that committed, so
	// that a server's own cache sees its admin API's changes at once,
	// without waiting for the next poll.
	Changed func()
	// Portal is where portal links point and how long they last.
	Portal PortalConfig
}

// Service runs lifecycle operations against the key database.
type Service struct {
	cfg Config
	db  store.DB
}

// New returns a Service.
func New(cfg Config, db store.DB) (*Service, error) {
	if cfg.Formats == nil || cfg.Hasher == nil || cfg.ValidScope == nil || db == nil {
		return nil, errors.New("admin: Formats, Hasher, ValidScope and a database are required")
	}
	if cfg.Grace <= 0 {
		return nil, errors.New("admin: Grace must be positive")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Portal.PublicURL == "" {
		cfg.Portal.PublicURL = "http://localhost:9092"
	}
	if cfg.Portal.CodeTTL <= 0 {
		cfg.Portal.CodeTTL = 15 * time.Minute
	}
	if cfg.Portal.SessionTTL <= 0 {
		cfg.Portal.SessionTTL = time.Hour
	}
	return &Service{cfg: cfg, db: db}, nil
}

// changed reports a committed change (err nil) to Config.Changed.
func (s *Service) changed(err error) {
	if err == nil && s.cfg.Changed != nil {
		s.cfg.Changed()
	}
}

// tenantRE is the shape of tenant and organization ids (policy.ValidOrg
// applies the same rule to the header).
var tenantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`)

// CreateRequest describes a new key. Env or Prefix picks its format.
type CreateRequest struct {
	Tenant    string        `json:"tenant"`
	Name      string        `json:"name"`
	Env       keys.Env      `json:"env"`
	Prefix    string        `json:"prefix"` // a configured format prefix; overrides Env
	Scopes    []string      `json:"scopes"`
	Plan      string        `json:"plan"`       // empty: the env's plan
	ExpiresIn time.Duration `json:"expires_in"` // 0: never
	// AllowedCIDRs are the networks the key may be used from (none:
	// anywhere); Metadata is forwarded upstream as configured headers.
	AllowedCIDRs []string          `json:"allowed_cidrs"`
	Metadata     map[string]string `json:"metadata"`
}

// Created is a new key with its secret, which exists only here.
type Created struct {
	Record keys.Record
	Key    string
}

func (s *Service) validateCommon(tenant, name string, scopes []string, plan string) error {
	if tenant == "" {
		return invalid("tenant", "required")
	}
	if !tenantRE.MatchString(tenant) {
		return invalid("tenant", "%q must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting with a letter or digit", tenant)
	}
	if len(name) > 200 {
		return invalid("name", "longer than 200 characters")
	}
	for i, sc := range scopes {
		if err := s.cfg.ValidScope(sc); err != nil {
			return invalid(fmt.Sprintf("scopes[%d]", i), "%v", err)
		}
	}
	if plan != "" && !slices.Contains(s.cfg.Plans, plan) {
		return invalid("plan", "%q is not a configured plan (have %s)", plan, strings.Join(s.cfg.Plans, ", "))
	}
	return nil
}

func (s *Service) format(env keys.Env, prefix string) (keys.Format, error) {
	if prefix != "" {
		f, ok := s.cfg.Formats.ByPrefix(prefix)
		if !ok {
			return f, invalid("prefix", "%q is not a configured key format", prefix)
		}
		if env != "" && f.Env != env {
			return f, invalid("env", "prefix %q is for %s keys, not %s", prefix, f.Env, env)
		}
		return f, nil
	}
	if env == "" {
		env = s.defaultEnv()
	}
	if !env.Valid() {
		return keys.Format{}, invalid("env", "%q is not test or live", env)
	}
	f, ok := s.cfg.Formats.ForEnv(env)
	if !ok {
		return f, invalid("env", "no key format is configured for %s keys", env)
	}
	return f, nil
}

// defaultEnv is the env of a key asked for without env or prefix: test
// where a test format is configured (a new key should not reach production
// by accident), else the only env there is (e.g. a live-only deployment).
func (s *Service) defaultEnv() keys.Env {
	if _, ok := s.cfg.Formats.ForEnv(keys.EnvTest); ok {
		return keys.EnvTest
	}
	return keys.EnvLive
}

// Create makes a key and stores its hash; the secret is returned once.
func (s *Service) Create(ctx context.Context, r CreateRequest) (Created, error) {
	p, err := allow(ctx, PermKeysCreate, "create keys")
	if err != nil {
		return Created{}, err
	}
	if p.Tenant != "" && r.Tenant == "" {
		r.Tenant = p.Tenant
	}
	if _, err := allowTenant(ctx, PermKeysCreate, "create keys", r.Tenant, "tenant "+r.Tenant); err != nil {
		return Created{}, err
	}
	f, err := s.format(r.Env, r.Prefix)
	if err != nil {
		return Created{}, err
	}
	if err := s.validateCommon(r.Tenant, r.Name, r.Scopes, r.Plan); err != nil {
		return Created{}, err
	}
	if err := p.bounds(f.Env, r.Scopes, r.Plan); err != nil {
		return Created{}, err
	}
	if p.Tenant != "" && len(r.Metadata) > 0 {
		// The upstream trusts metadata as it trusts the key id: the
		// operator sets it, not the key's holder.
		return Created{}, invalid("metadata", "a portal session cannot set metadata")
	}
	if r.ExpiresIn < 0 {
		return Created{}, invalid("expires_in", "must not be negative")
	}
	now := s.cfg.Now().UTC()
	rec, key, err := s.newRecord(f, r.Tenant, r.Name, r.Scopes, r.Plan, now)
	if err != nil {
		return Created{}, err
	}
	if r.ExpiresIn > 0 {
		rec.ExpiresAt = now.Add(r.ExpiresIn)
	}
	if rec.AllowedCIDRs, rec.Metadata, err = restrictions(r.AllowedCIDRs, r.Metadata); err != nil {
		return Created{}, err
	}
	rec.Lineage = rec.ID
	out, err := s.db.InsertKey(ctx, rec)
	s.changed(err)
	if err != nil {
		return Created{}, err
	}
	return Created{Record: out, Key: key}, nil
}

func (s *Service) newRecord(f keys.Format, tenant, name string, scopes []string, plan string, now time.Time) (keys.Record, string, error) {
	key, err := keys.Generate(f)
	if err != nil {
		return keys.Record{}, "", err
	}
	id, err := keys.NewID("key")
	if err != nil {
		return keys.Record{}, "", err
	}
	if plan == "" {
		plan = string(f.Env)
	}
	return keys.Record{
		ID: id, Hash: s.cfg.Hasher.Sum(key), Prefix: keys.DisplayPrefix(key), Last4: keys.Last4(key),
		Tenant: tenant, Name: name, Env: f.Env, Scopes: nonNil(scopes), Plan: plan, CreatedAt: now,
	}, key, nil
}

// ImportRequest brings in a key issued elsewhere by its SHA-256 hash.
type ImportRequest struct {
	SHA256        string   `json:"sha256"`
	Prefix        string   `json:"prefix"` // the key's format prefix, e.g. cc_live_
	DisplayPrefix string   `json:"display_prefix"`
	Last4         string   `json:"last4"`
	Tenant        string   `json:"tenant"`
	Name          string   `json:"name"`
	Scopes        []string `json:"scopes"`
	Plan          string   `json:"plan"`
}

// Import stores a key known only by its SHA-256 hash. With a pepper the
// stored hash cannot be derived from a plain SHA-256, so import is refused.
func (s *Service) Import(ctx context.Context, r ImportRequest) (keys.Record, error) {
	if _, err := allowTenant(ctx, PermKeysImport, "import keys", r.Tenant, "tenant "+r.Tenant); err != nil {
		return keys.Record{}, err
	}
	h, err := keys.ParseHash(strings.ToLower(strings.TrimSpace(r.SHA256)))
	if err != nil {
		return keys.Record{}, invalid("sha256", "%v", err)
	}
	if s.cfg.Hasher.Peppered() {
		return keys.Record{}, invalid("sha256", "database.pepper is set: stored hashes are HMACs, so a plain SHA-256 cannot be imported")
	}
	if r.Prefix == "" {
		return keys.Record{}, invalid("prefix", "required: the format prefix of the imported key, e.g. cc_live_")
	}
	f, err := s.format("", r.Prefix)
	if err != nil {
		return keys.Record{}, err
	}
	if err := s.validateCommon(r.Tenant, r.Name, r.Scopes, r.Plan); err != nil {
		return keys.Record{}, err
	}
	disp := r.DisplayPrefix
	if disp == "" {
		disp = f.Prefix
	}
	if !strings.HasPrefix(disp, f.Prefix) || len(disp) > keys.DisplayPrefixLen {
		return keys.Record{}, invalid("display_prefix", "must start with %q and be at most %d characters", f.Prefix, keys.DisplayPrefixLen)
	}
	if len(r.Last4) > 4 {
		return keys.Record{}, invalid("last4", "at most 4 characters")
	}
	id, err := keys.NewID("key")
	if err != nil {
		return keys.Record{}, err
	}
	plan := r.Plan
	if plan == "" {
		plan = string(f.Env)
	}
	rec := keys.Record{
		ID: id, Hash: h, Prefix: disp, Last4: r.Last4, Tenant: r.Tenant, Name: r.Name, Env: f.Env,
		Scopes: nonNil(r.Scopes), Plan: plan, Lineage: id, CreatedAt: s.cfg.Now().UTC(), Imported: true,
	}
	out, err := s.db.InsertKey(ctx, rec)
	s.changed(err)
	return out, err
}

// ListRequest filters List.
type ListRequest struct {
	Tenant         string
	IncludeRevoked bool
	After          string
	Limit          int
}

// List returns keys, ordered by id, at most r.Limit of them (0: all). next
// is the cursor for the following page (pass it as After), empty on the
// last page.
func (s *Service) List(ctx context.Context, r ListRequest) (rs []keys.Record, next string, err error) {
	p, err := allow(ctx, PermKeysRead, "list keys")
	if err != nil {
		return nil, "", err
	}
	if p.Tenant != "" {
		r.Tenant = p.Tenant
	}
	if r.Limit < 0 {
		return nil, "", invalid("limit", "must not be negative")
	}
	f := store.ListFilter{Tenant: r.Tenant, IncludeRevoked: r.IncludeRevoked, After: r.After, Limit: r.Limit}
	if r.Limit > 0 {
		f.Limit++ // one more than asked tells whether a next page exists
	}
	rs, err = s.db.ListKeys(ctx, f)
	if err != nil {
		return nil, "", err
	}
	if r.Limit > 0 && len(rs) > r.Limit {
		rs = rs[:r.Limit]
		next = rs[len(rs)-1].ID
	}
	return rs, next, nil
}

// Show returns one key.
func (s *Service) Show(ctx context.Context, id string) (keys.Record, error) {
	return s.key(ctx, id, PermKeysRead, "read keys")
}

// key loads key id for an action needing perm; a key of a tenant the
// caller may not see is not found, as a key that does not exist.
func (s *Service) key(ctx context.Context, id string, perm Permission, what string) (keys.Record, error) {
	if _, err := allow(ctx, perm, what); err != nil {
		return keys.Record{}, err
	}
	if id == "" {
		return keys.Record{}, invalid("id", "required")
	}
	rec, err := s.db.KeyByID(ctx, id)
	if err != nil {
		return keys.Record{}, err
	}
	if _, err := allowTenant(ctx, perm, what, rec.Tenant, "key "+id); err != nil {
		return keys.Record{}, err
	}
	return rec, nil
}

// Revoke revokes a key at once. A key revoked before is returned as stored
// with ErrAlreadyRevoked.
func (s *Service) Revoke(ctx context.Context, id string) (keys.Record, error) {
	if _, err := s.key(ctx, id, PermKeysRevoke, "revoke keys"); err != nil {
		return keys.Record{}, err
	}
	rec, err := s.db.RevokeKey(ctx, id, s.cfg.Now().UTC())
	s.changed(err)
	if errors.Is(err, store.ErrRevoked) {
		return rec, fmt.Errorf("%w: key %s was revoked at %s", ErrAlreadyRevoked, id, rec.RevokedAt.UTC().Format(time.RFC3339))
	}
	return rec, err
}

// Roll replaces a key by a new one with the same tenant, scopes, plan and
// lineage; the old one keeps working for grace (0: the configured default).
func (s *Service) Roll(ctx context.Context, id string, grace time.Duration) (old keys.Record, created Created, err error) {
	cur, err := s.key(ctx, id, PermKeysRoll, "roll keys")
	if err != nil {
		return old, created, err
	}
	if grace < 0 {
		return old, created, invalid("grace", "must not be negative")
	}
	if grace == 0 {
		grace = s.cfg.Grace
	}
	now := s.cfg.Now().UTC()
	switch cur.Status(now) {
	case keys.StatusRevoked:
		return old, created, fmt.Errorf("%w: id: key %s is revoked", ErrInvalid, id)
	case keys.StatusExpired:
		return old, created, fmt.Errorf("%w: id: key %s has expired", ErrInvalid, id)
	}
	if cur.ReplacedBy != "" {
		return old, created, fmt.Errorf("%w: id: key %s was already rolled to %s", ErrInvalid, id, cur.ReplacedBy)
	}
	f, ok := s.cfg.Formats.ForEnv(cur.Env)
	if p := formatPrefixOf(s.cfg.Formats, cur.Prefix); p != "" {
		f, ok = s.cfg.Formats.ByPrefix(p)
	}
	if !ok {
		return old, created, fmt.Errorf("%w: id: no key format is configured for %s keys", ErrInvalid, cur.Env)
	}
	rec, key, err := s.newRecord(f, cur.Tenant, cur.Name, cur.Scopes, cur.Plan, now)
	if err != nil {
		return old, created, err
	}
	rec.Lineage = cur.Lineage
	if rec.Lineage == "" {
		rec.Lineage = cur.ID
	}
	rec.ExpiresAt = cur.ExpiresAt
	rec.AllowedCIDRs, rec.Metadata = cur.AllowedCIDRs, cur.Metadata // the new key works where the old one did
	old, next, err := s.db.RollKey(ctx, id, rec, now, now.Add(grace))
	s.changed(err)
	if err != nil {
		return keys.Record{}, Created{}, err
	}
	return old, Created{Record: next, Key: key}, nil
}

// formatPrefixOf finds the configured prefix a display prefix starts with,
// so a rolled key keeps its format (e.g. max_dev_ak_ rather than any test format).
func formatPrefixOf(fs *keys.Formats, display string) string {
	for _, f := range fs.List() {
		if f.Checksum && strings.HasPrefix(display, f.Prefix) {
			return f.Prefix
		}
	}
	return ""
}

// SetGrant lets tenant's keys act in org with at most scopes.
func (s *Service) SetGrant(ctx context.Context, tenant, org string, scopes []string) (keys.Grant, error) {
	if _, err := allow(ctx, PermGrantsWrite, "set grants"); err != nil {
		return keys.Grant{}, err
	}
	if err := s.validateCommon(tenant, "", scopes, ""); err != nil {
		return keys.Grant{}, err
	}
	if org == "" {
		return keys.Grant{}, invalid("org", "required")
	}
	if !tenantRE.MatchString(org) {
		return keys.Grant{}, invalid("org", "%q is not a valid organization id", org)
	}
	if org == tenant {
		return keys.Grant{}, invalid("org", "a tenant needs no grant in its own organization")
	}
	now := s.cfg.Now().UTC()
	g, err := s.db.SetGrant(ctx, keys.Grant{Tenant: tenant, Org: org, Scopes: nonNil(scopes), CreatedAt: now, UpdatedAt: now})
	s.changed(err)
	return g, err
}

// ListGrants lists grants in force, for one tenant or all.
func (s *Service) ListGrants(ctx context.Context, tenant string) ([]keys.Grant, error) {
	if _, err := allow(ctx, PermGrantsRead, "list grants"); err != nil {
		return nil, err
	}
	return s.db.ListGrants(ctx, tenant)
}

// RevokeGrant ends a grant; store.ErrNotFound when none is in force (never
// set, or revoked before: a revoked grant is no longer listed, and setting
// it again starts a new one).
func (s *Service) RevokeGrant(ctx context.Context, tenant, org string) (keys.Grant, error) {
	if _, err := allow(ctx, PermGrantsWrite, "revoke grants"); err != nil {
		return keys.Grant{}, err
	}
	if tenant == "" {
		return keys.Grant{}, invalid("tenant", "required")
	}
	if org == "" {
		return keys.Grant{}, invalid("org", "required")
	}
	g, err := s.db.RevokeGrant(ctx, tenant, org, s.cfg.Now().UTC())
	s.changed(err)
	return g, err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// SetExpiry changes when a key expires: at (zero: never). A revoked key
// cannot be changed.
func (s *Service) SetExpiry(ctx context.Context, id string, at time.Time) (keys.Record, error) {
	if _, err := s.key(ctx, id, PermKeysUpdate, "change keys"); err != nil {
		return keys.Record{}, err
	}
	if !at.IsZero() && !at.After(s.cfg.Now()) {
		return keys.Record{}, invalid("expires_at", "%s is not in the future (to stop a key now, revoke it)", at.UTC().Format(time.RFC3339))
	}
	rec, err := s.db.SetExpiry(ctx, id, at)
	s.changed(err)
	if errors.Is(err, store.ErrRevoked) {
		return rec, fmt.Errorf("%w: id: key %s is revoked", ErrInvalid, id)
	}
	return rec, err
}
