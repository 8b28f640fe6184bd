package main

import (
	"context"
	"log/slog"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
)

// configFlag adds --config to c. The returned function names the file to
// read: the flag's value if given, else $KEYGATE_CONFIG, else none
// (built-in defaults).
func configFlag(c *cobra.Command, e env) func() string {
	var path string
	c.Flags().StringVar(&path, "config", "", "config `file` (YAML); default $KEYGATE_CONFIG, else built-in defaults")
	return func() string {
		if c.Flags().Changed("config") {
			return path
		}
		v, _ := e.lookup(config.EnvConfigFile)
		return v
	}
}

// jsonFlag adds --json to c.
func jsonFlag(c *cobra.Command) *bool {
	return c.Flags().Bool("json", false, "print JSON instead of text")
}

// loadConfig reads the configuration and builds the process logger,
// warning about KEYGATE_* variables that are not settings.
func loadConfig(path string, e env) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(path, e.lookup)
	if err != nil {
		return cfg, nil, err
	}
	log := server.NewLogger(cfg.Log, e.stderr)
	for _, w := range config.UnknownEnv(e.environOrNil()) {
		log.Warn(w)
	}
	return cfg, log, nil
}

// openAdmin opens the key database and the lifecycle service, for the
// CLI commands.
func openAdmin(ctx context.Context, cfgPath string, e env) (*admin.Service, store.DB, config.Config, error) {
	cfg, log, err := loadConfig(cfgPath, e)
	if err != nil {
		return nil, nil, cfg, err
	}
	svc, db, err := server.OpenAdmin(ctx, cfg, log)
	return svc, db, cfg, err
}

// lifecycle gives a key or grant command --config and --json, and runs
// it: open the key database, do the work, print what do returns.
func lifecycle(c *cobra.Command, e env, do func(ctx context.Context, s *admin.Service, args []string) (any, error)) {
	cfgPath := configFlag(c, e)
	asJSON := jsonFlag(c)
	c.RunE = func(c *cobra.Command, args []string) error {
		svc, db, _, err := openAdmin(c.Context(), cfgPath(), e)
		if err != nil {
			return err
		}
		defer db.Close()
		out, err := do(admin.WithCaller(c.Context(), cliCaller(e), "", ""), svc, args)
		if err != nil {
			return explain(err)
		}
		return printResult(e, out, *asJSON, time.Now())
	}
}

// cliCaller is the CLI's caller: an operator with the admin role (whoever
// can run keygate against the database can change it anyway), named in
// the audit log by the OS user.
func cliCaller(e env) admin.Principal {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if v, ok := e.lookup("USER"); ok && v != "" {
		name = v
	}
	return admin.Principal{Actor: store.Actor{Type: store.ActorCLI, Name: name}, Role: admin.RoleAdmin}
}
