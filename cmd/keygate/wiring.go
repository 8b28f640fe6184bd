package main

import (
	"context"
	"flag"
	"log/slog"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
)

// configFlag adds --config, defaulting to $KEYGATE_CONFIG.
func configFlag(fs *flag.FlagSet, e env) *string {
	def, _ := e.lookup(config.EnvConfigFile)
	return fs.String("config", def, "config file (YAML); default $KEYGATE_CONFIG, else built-in defaults")
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
