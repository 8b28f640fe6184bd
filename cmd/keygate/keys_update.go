package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
)

// restrictionFlags adds --allow-cidr and --meta, both repeatable.
func restrictionFlags(c *cobra.Command, cidrs, meta *[]string) {
	f := c.Flags()
	f.StringArrayVar(cidrs, "allow-cidr", nil, "only accept the key from these networks: a comma-separated `list` of CIDR prefixes, e.g. 10.0.0.0/8,2001:db8::/32 (repeatable)")
	f.StringArrayVar(meta, "meta", nil, "metadata stored with the key and forwarded upstream as headers.metadata configures, `KEY=VALUE` (repeatable)")
}

// parseRestrictions checks --allow-cidr and --meta before any database
// is opened, each error naming its flag.
func parseRestrictions(cidrs, meta []string) ([]string, map[string]string, error) {
	ps, err := keys.ParseCIDRs(cidrs)
	if err != nil {
		return nil, nil, valueError("--allow-cidr: %v", err)
	}
	m, err := keys.ParseMetadata(meta)
	if err != nil {
		return nil, nil, valueError("--meta: %v", err)
	}
	return keys.FormatCIDRs(ps), m, nil
}

func newKeysUpdateCmd(e env) *cobra.Command {
	var cidrs, meta []string
	var clearCIDRs, clearMeta bool
	c := &cobra.Command{
		Use:   "update ID [--allow-cidr LIST]... [--meta KEY=VALUE]...",
		Short: "change the networks a key may be used from, or its metadata",
		Long: `Change a key's allowed networks or its metadata. --allow-cidr replaces the
whole list of networks and --meta the whole metadata; --clear-cidrs lets the
key be used from anywhere again and --clear-meta removes its metadata. A
request from outside the networks is denied with 403 ip_not_allowed. The
change is an audit event (key.updated) and reaches running servers as a
revocation does. A revoked key cannot be changed.`,
		Example: `  keygate keys update key_01J… --allow-cidr 10.0.0.0/8 --allow-cidr 2001:db8::/32
  keygate keys update key_01J… --meta team=billing --meta owner=jane
  keygate keys update key_01J… --clear-cidrs --clear-meta`,
		Args:        oneArg("key id"),
		Annotations: map[string]string{annArgs: keyIDArg},
	}
	restrictionFlags(c, &cidrs, &meta)
	f := c.Flags()
	f.BoolVar(&clearCIDRs, "clear-cidrs", false, "remove every network: the key works from anywhere")
	f.BoolVar(&clearMeta, "clear-meta", false, "remove all the key's metadata")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, args []string) (any, error) {
		var r admin.UpdateRequest
		switch {
		case clearCIDRs && len(cidrs) > 0:
			return nil, valueError("give --allow-cidr or --clear-cidrs, not both")
		case clearMeta && len(meta) > 0:
			return nil, valueError("give --meta or --clear-meta, not both")
		case !clearCIDRs && !clearMeta && len(cidrs) == 0 && len(meta) == 0:
			return nil, valueError("give --allow-cidr, --meta, --clear-cidrs or --clear-meta")
		}
		ps, m, err := parseRestrictions(cidrs, meta)
		if err != nil {
			return nil, err
		}
		if clearCIDRs || len(cidrs) > 0 {
			r.AllowedCIDRs = &ps
		}
		if clearMeta || len(meta) > 0 {
			r.Metadata = &m
		}
		return s.Update(ctx, args[0], r)
	})
	return c
}
