package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/duration"
	"github.com/keygate/keygate/keys"
)

const keyIDArg = "ID  the key's id (key_…), as 'keygate keys list' and 'keys create' print it"

func newKeysCmd(e env) *cobra.Command {
	c := group("keys", "create, list, show, revoke, roll and import API keys",
		`Create, list, show, revoke, roll and import API keys. Keygate stores a
key's hash, never the key: a secret is printed once, by create and roll.
Changes reach running servers within database.poll_interval (SQLite) or at
once (PostgreSQL), without a restart.`)
	c.AddCommand(newKeysCreateCmd(e), newKeysListCmd(e), newKeysShowCmd(e), newKeysRevokeCmd(e), newKeysRollCmd(e),
		newKeysExpireCmd(e), newKeysUpdateCmd(e), newKeysImportCmd(e), newKeysUsageCmd(e))
	return c
}

func newKeysCreateCmd(e env) *cobra.Command {
	var r admin.CreateRequest
	var keyEnv, scopes string
	var cidrs, meta []string
	c := &cobra.Command{
		Use:   "create --tenant TENANT",
		Short: "create a key; its secret is printed once",
		Long: `Create an API key for a tenant and print it, once: Keygate keeps only its hash.

The key's format is the one configured for --prefix, else for --env. Without
either, a key is a test key where a test format is configured, else of the
only env there is (a live-only deployment makes live keys).`,
		Example: `  keygate keys create --tenant acme --scopes patients:read,forms:write
  keygate keys create --tenant acme --env live --expires-in 90d --name "billing service"
  keygate keys create --tenant acme --allow-cidr 10.0.0.0/8,2001:db8::/32 --meta team=billing --meta owner=jane
  KEY=$(keygate keys create --tenant acme --json | jq -r .key)`,
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&r.Tenant, "tenant", "", "the tenant (organization) the key belongs to")
	f.StringVar(&r.Name, "name", "", "a label for the key, e.g. the service that uses it")
	f.StringVar(&keyEnv, "env", "", "test or live (default: test if configured, else the only env)")
	f.StringVar(&r.Prefix, "prefix", "", "a configured key format prefix, e.g. sk_live_ (default: the env's format)")
	f.StringVar(&scopes, "scopes", "", "comma-separated `list` of scopes the key carries, e.g. patients:read,forms:write")
	f.StringVar(&r.Plan, "plan", "", "rate-limit plan (default: the plan named after the env)")
	f.Var(duration.Value{D: &r.ExpiresIn}, "expires-in", "expire the key after this long, e.g. 90d or 12h (default: never)")
	restrictionFlags(c, &cidrs, &meta)
	required(c, "tenant")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, _ []string) (any, error) {
		r.Env, r.Scopes = keys.Env(keyEnv), splitList(scopes)
		var err error
		if r.AllowedCIDRs, r.Metadata, err = parseRestrictions(cidrs, meta); err != nil {
			return nil, err
		}
		return s.Create(ctx, r)
	})
	return c
}

func newKeysImportCmd(e env) *cobra.Command {
	var r admin.ImportRequest
	var scopes string
	c := &cobra.Command{
		Use:   "import --sha256 HEX --prefix PREFIX --tenant TENANT",
		Short: "import a key issued elsewhere, by its SHA-256",
		Long: `Import a key issued by another system, known only by its SHA-256 hash, so
that it keeps working behind Keygate. The prefix must be a configured key
format. Not possible with database.pepper set (stored hashes are then HMACs).`,
		Example: `  keygate keys import --sha256 "$(printf %s "$OLD_KEY" | sha256sum | cut -d' ' -f1)" \
      --prefix cc_live_ --tenant cat --display-prefix "${OLD_KEY:0:15}" --last4 "${OLD_KEY: -4}"`,
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&r.SHA256, "sha256", "", "SHA-256 of the key, 64 hex digits")
	f.StringVar(&r.Prefix, "prefix", "", "the key's format prefix, e.g. cc_live_")
	f.StringVar(&r.Tenant, "tenant", "", "the tenant the key belongs to")
	f.StringVar(&r.DisplayPrefix, "display-prefix", "", "the key's first 15 characters, if known, to show in lists")
	f.StringVar(&r.Last4, "last4", "", "the key's last 4 characters, if known, to show in lists")
	f.StringVar(&r.Name, "name", "", "a label for the key")
	f.StringVar(&scopes, "scopes", "", "comma-separated `list` of scopes the key carries")
	f.StringVar(&r.Plan, "plan", "", "rate-limit plan (default: the plan named after the env)")
	required(c, "sha256", "prefix", "tenant")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, _ []string) (any, error) {
		r.Scopes = splitList(scopes)
		return s.Import(ctx, r)
	})
	return c
}

// keyPage is one page of keys list.
type keyPage struct {
	keys []keys.Record
	next string // the id to pass as --after for the next page; empty: last page
}

func newKeysListCmd(e env) *cobra.Command {
	var r admin.ListRequest
	c := &cobra.Command{
		Use:   "list",
		Short: "list keys (prefix…last4, never the key)",
		Long: `List keys, ordered by id: id, display prefix and last 4 characters (never
the key), tenant, env, status, plan, scopes and times. Revoked keys are
left out unless --all. With --limit, a note on stderr gives the --after
value for the next page.`,
		Example: `  keygate keys list --tenant acme
  keygate keys list --all --json
  keygate keys list --limit 100 --after key_01J…`,
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&r.Tenant, "tenant", "", "only this tenant's keys")
	f.BoolVar(&r.IncludeRevoked, "all", false, "include revoked keys")
	f.IntVar(&r.Limit, "limit", 0, "at most this many keys (default: all)")
	f.StringVar(&r.After, "after", "", "only keys whose `id` sorts after this one (the next page)")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, _ []string) (any, error) {
		rs, next, err := s.List(ctx, r)
		return keyPage{rs, next}, err
	})
	return c
}

func newKeysShowCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:         "show ID",
		Short:       "show one key",
		Long:        "Show one key, whatever its status: everything keys list shows, never the key.",
		Example:     "  keygate keys show key_01J… --json",
		Args:        oneArg("key id"),
		Annotations: map[string]string{annArgs: keyIDArg},
	}
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, args []string) (any, error) {
		return s.Show(ctx, args[0])
	})
	return c
}

func newKeysRevokeCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:   "revoke ID",
		Short: "revoke a key at once",
		Long: `Revoke a key at once. Servers deny it (401 api_key_revoked) as soon as
they see the change: within database.poll_interval on SQLite, at once on
PostgreSQL. Revoking a key revoked before fails, saying when it was revoked.`,
		Example: "  keygate keys revoke key_01J…",
		Args:    oneArg("key id"),
		Annotations: map[string]string{annArgs: keyIDArg, annExit: `0  the key is revoked
1  no such key, the key was revoked before, or the database failed
2  usage error: unknown flag, no ID or more than one`},
	}
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, args []string) (any, error) {
		return s.Revoke(ctx, args[0])
	})
	return c
}

// rolled is what keys roll prints: the old key and its replacement.
type rolled struct {
	old keys.Record
	new admin.Created
}

func newKeysRollCmd(e env) *cobra.Command {
	var grace time.Duration
	c := &cobra.Command{
		Use:   "roll ID",
		Short: "replace a key by a new secret; the old one works for a grace period",
		Long: `Replace a key by a new one with the same tenant, scopes, plan, expiry and
lineage, and print the new secret, once. The old key keeps working until
the grace period ends, so clients can switch without downtime.`,
		Example: `  keygate keys roll key_01J…
  keygate keys roll key_01J… --grace 7d`,
		Args:        oneArg("key id"),
		Annotations: map[string]string{annArgs: keyIDArg},
	}
	c.Flags().Var(duration.Value{D: &grace}, "grace", "how long the old key keeps working, e.g. 1h or 7d (default: roll.grace, 24h)")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, args []string) (any, error) {
		old, created, err := s.Roll(ctx, args[0], grace)
		return rolled{old, created}, err
	})
	return c
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newKeysExpireCmd(e env) *cobra.Command {
	var in time.Duration
	var at string
	var never bool
	c := &cobra.Command{
		Use:   "expire ID (--in DURATION | --at TIME | --never)",
		Short: "change when a key expires",
		Long: `Change when a key expires: after a duration from now, at a time (RFC 3339), or
never. An expired key is denied with 401 api_key_expired. A revoked key
cannot be changed; to stop a key now, revoke it.`,
		Example: `  keygate keys expire key_01J… --in 30d
  keygate keys expire key_01J… --at 2027-01-31T00:00:00Z
  keygate keys expire key_01J… --never`,
		Args:        oneArg("key id"),
		Annotations: map[string]string{annArgs: keyIDArg},
	}
	f := c.Flags()
	f.Var(duration.Value{D: &in}, "in", "expire this long from now, e.g. 30d or 12h")
	f.StringVar(&at, "at", "", "expire at this time (RFC 3339)")
	f.BoolVar(&never, "never", false, "never expire")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, args []string) (any, error) {
		var when time.Time
		switch n := btoi(in != 0) + btoi(at != "") + btoi(never); {
		case n != 1:
			return nil, valueError("give exactly one of --in, --at or --never")
		case in < 0:
			return nil, valueError("--in: must be positive")
		case in > 0:
			when = time.Now().Add(in)
		case at != "":
			t, err := time.Parse(time.RFC3339, at)
			if err != nil {
				return nil, valueError("--at: %q is not an RFC 3339 time, e.g. 2027-01-31T00:00:00Z", at)
			}
			when = t
		}
		return s.SetExpiry(ctx, args[0], when)
	})
	return c
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
