package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

func newAdminTokenCmd(e env) *cobra.Command {
	c := group("admin-token", "make admin tokens for the admin API and the console",
		`Admin tokens authenticate callers of the admin API and operators of the
console. Each has a name (the audit log's actor) and a role: admin (everything),
viewer (read only) or portal (may only open portal sessions). The config holds
the token's SHA-256, never the token.`)
	c.AddCommand(newAdminTokenNewCmd(e))
	return c
}

func newAdminTokenNewCmd(e env) *cobra.Command {
	var name, role string
	c := &cobra.Command{
		Use:   "new --name NAME --role ROLE",
		Short: "make a new admin token and print it once, with its config line",
		Long: `Make a new admin token (256 random bits) and print it once, with the line to
add under admin.tokens in the config file. Keygate keeps only the SHA-256;
the token itself is shown now and never again.`,
		Example: `  keygate admin-token new --name ci --role viewer
  keygate admin-token new --name platform-backend --role portal`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			r, err := admin.ParseRole(role)
			if err != nil {
				return valueError("--role: %q is not admin, viewer or portal", role)
			}
			if _, err := admin.NewTokens("", []admin.TokenConfig{{Name: name, SHA256: fmt.Sprintf("%064x", 0), Role: string(r)}}); err != nil {
				return valueError("--name: %q must be 1-64 letters, digits, '.', '_' or '-'", name)
			}
			token, sum, err := admin.NewAdminToken()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Admin token %s (role %s), shown only now; store it safely:\n\n  %s\n\n", name, r, token)
			fmt.Fprintf(e.stdout, "Add it to the config file:\n\nadmin:\n  tokens:\n    - {name: %s, sha256: %s, role: %s}\n", name, sum, r)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "the token's name, as the audit log shows it")
	f.StringVar(&role, "role", "", "admin, viewer or portal")
	required(c, "name", "role")
	return c
}
