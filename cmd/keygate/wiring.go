package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/store"
)

// configFlag adds --config, defaulting to $KEYGATE_CONFIG.
func configFlag(fs *flag.FlagSet, e env) *string {
	def, _ := e.lookup("KEYGATE_CONFIG")
	return fs.String("config", def, "config file (YAML); default $KEYGATE_CONFIG, else built-in defaults")
}

func loadConfig(path string, e env) (config.Config, error) {
	cfg, err := config.Load(path, e.lookup)
	if err != nil {
		return cfg, err
	}
	// Config only knows its own fields; the packages that own routes and
	// formats validate the rest, still naming the config field.
	if _, err := buildPolicy(cfg); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if _, err := buildFormats(cfg); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := errorFormat(cfg.Errors).Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func buildFormats(cfg config.Config) (*keys.Formats, error) {
	fs := make([]keys.Format, len(cfg.KeyFormats))
	for i, f := range cfg.KeyFormats {
		fs[i] = keys.Format{Prefix: f.Prefix, Env: keys.Env(f.Env), Checksum: f.HasChecksum()}
	}
	return keys.NewFormats(fs)
}

func toPolicyRoute(r config.Route) policy.Route {
	return policy.Route{Methods: r.Methods, Path: r.Path, Scopes: r.Scopes, OrgRequired: r.OrgRequired}
}

func buildPolicy(cfg config.Config) (*policy.Policy, error) {
	pc := policy.Config{OrgRequired: cfg.Organization.Required, ScopeForm: policy.ScopeForm(cfg.Scopes.Form)}
	for _, r := range cfg.Routes {
		pc.Routes = append(pc.Routes, toPolicyRoute(r))
	}
	if cfg.DefaultRoute != nil {
		d := toPolicyRoute(*cfg.DefaultRoute)
		pc.DefaultRoute = &d
	}
	return policy.New(pc)
}

func limitsConfig(cfg config.Config) limits.Config {
	plans := make(map[string][]limits.Window, len(cfg.Plans))
	for name, ws := range cfg.Plans {
		for _, w := range ws {
			plans[name] = append(plans[name], limits.Window{Limit: w.Limit, Period: w.Period})
		}
	}
	return limits.Config{
		Plans: plans, RedisURL: cfg.Redis.URL, OnRedisError: limits.Mode(cfg.Limits.OnRedisError),
		Timeout: cfg.Redis.Timeout, KeyPrefix: cfg.Redis.KeyPrefix,
	}
}

func openDB(ctx context.Context, cfg config.Config, log *slog.Logger) (store.DB, error) {
	return store.Open(ctx, cfg.Database.URL, store.Options{
		MaxConns: cfg.Database.MaxConns, QueryTimeout: cfg.Database.Timeout,
		ConnectTimeout: cfg.Database.ConnectTimeout, Logger: log,
	})
}

// openAdmin opens the database (migrated) and the lifecycle service, for
// the CLI commands.
func openAdmin(ctx context.Context, cfgPath string, e env) (*admin.Service, store.DB, config.Config, error) {
	cfg, err := loadConfig(cfgPath, e)
	if err != nil {
		return nil, nil, cfg, err
	}
	log := newLogger(cfg.Log, e.stderr)
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return nil, nil, cfg, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, nil, cfg, fmt.Errorf("migrating the key database: %w", err)
	}
	svc, err := newAdmin(cfg, db)
	if err != nil {
		db.Close()
		return nil, nil, cfg, err
	}
	return svc, db, cfg, nil
}

func newAdmin(cfg config.Config, db store.DB) (*admin.Service, error) {
	formats, err := buildFormats(cfg)
	if err != nil {
		return nil, err
	}
	form := policy.ScopeForm(cfg.Scopes.Form)
	plans := make([]string, 0, len(cfg.Plans))
	for name := range cfg.Plans {
		plans = append(plans, name)
	}
	sort.Strings(plans)
	return admin.New(admin.Config{
		Formats: formats, Hasher: keys.NewHasher([]byte(cfg.Database.Pepper)), Plans: plans,
		ValidScope: func(s string) error { return policy.ValidScope(form, s) },
		Grace:      cfg.Roll.Grace, Now: time.Now,
	}, db)
}
