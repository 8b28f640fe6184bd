package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/server"
)

func newMigrateCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:   "migrate",
		Short: "create the key database or bring its schema up to date",
		Long: `Create the key database (a SQLite file) if it does not exist and apply
schema migrations. Safe to run again, and from several processes at once;
serve does the same at start. The commands that manage keys and grants need
an existing database: run migrate (or serve) first.`,
		Example: `  keygate migrate
  KEYGATE_DATABASE_URL=postgres://keygate@db/keygate keygate migrate`,
		Args: noArgs,
	}
	cfgPath := configFlag(c, e)
	c.RunE = func(c *cobra.Command, _ []string) error {
		cfg, log, err := loadConfig(cfgPath(), e)
		if err != nil {
			return err
		}
		db, err := server.OpenDB(c.Context(), cfg, log, true)
		if err != nil {
			return err
		}
		defer db.Close()
		v, err := db.Version(c.Context())
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "Database %s is up to date (change version %d).\n", cfg.DatabaseKind(), v)
		return nil
	}
	return c
}
