package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

func newGrantsCmd(e env) *cobra.Command {
	c := group("grants", "let a tenant's keys act in other organizations",
		`Grants let a tenant's keys act in another organization (the
X-Organization-Id a request names), with the scopes the key and the grant
both have. A key needs no grant in its own tenant's organization.`)
	c.AddCommand(newGrantsSetCmd(e), newGrantsListCmd(e), newGrantsRevokeCmd(e))
	return c
}

func newGrantsSetCmd(e env) *cobra.Command {
	var tenant, org, scopes string
	c := &cobra.Command{
		Use:   "set --tenant TENANT --org ORG --scopes SCOPES",
		Short: "create or replace a grant",
		Long: `Let a tenant's keys act in an organization with at most the given scopes,
creating the grant or replacing its scopes. --scopes is required so that a
grant is never made empty by a forgotten flag; --scopes '' grants entry to
the organization with no scopes (routes that require none).`,
		Example: `  keygate grants set --tenant acme --org clinic-7 --scopes patients:read
  keygate grants set --tenant acme --org clinic-7 --scopes ''`,
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant whose keys the grant covers")
	f.StringVar(&org, "org", "", "the organization the tenant's keys may act in")
	f.StringVar(&scopes, "scopes", "", "comma-separated `list` of scopes granted there; '' for none")
	required(c, "tenant", "org", "scopes")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, _ []string) (any, error) {
		return s.SetGrant(ctx, tenant, org, splitList(scopes))
	})
	return c
}

func newGrantsListCmd(e env) *cobra.Command {
	var tenant string
	c := &cobra.Command{
		Use:     "list",
		Short:   "list grants in force",
		Long:    "List the grants in force, for one tenant or all, ordered by tenant and organization.",
		Example: "  keygate grants list --tenant acme --json",
		Args:    noArgs,
	}
	c.Flags().StringVar(&tenant, "tenant", "", "only this tenant's grants")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, _ []string) (any, error) {
		return s.ListGrants(ctx, tenant)
	})
	return c
}

func newGrantsRevokeCmd(e env) *cobra.Command {
	var tenant, org string
	c := &cobra.Command{
		Use:     "revoke --tenant TENANT --org ORG",
		Short:   "end a grant",
		Long:    "End a tenant's grant in an organization. Ending a grant that is not in force (never set, or revoked before) fails.",
		Example: "  keygate grants revoke --tenant acme --org clinic-7",
		Args:    noArgs,
		Annotations: map[string]string{annExit: `0  the grant is revoked
1  no grant in force for the tenant in the organization, or the database failed
2  usage error: unknown flag, missing --tenant or --org`},
	}
	f := c.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant whose keys the grant covers")
	f.StringVar(&org, "org", "", "the organization")
	required(c, "tenant", "org")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, _ []string) (any, error) {
		return s.RevokeGrant(ctx, tenant, org)
	})
	return c
}
