package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/keygate/keygate/server"
)

func cmdVersion(args []string, e env) error {
	fs := newFlags("version", e)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	b := server.ReadBuildInfo()
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(b)
	}
	v := "keygate " + b.Version
	if rev := b.Revision; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if b.Modified {
			rev += "+dirty"
		}
		v += " " + rev
	}
	fmt.Fprintf(e.stdout, "%s (%s, %s encoder)\n", v, b.Go, b.Encoder)
	return nil
}

func cmdMigrate(ctx context.Context, args []string, e env) error {
	fs := newFlags("migrate", e)
	cfgPath := configFlag(fs, e)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*cfgPath, e)
	if err != nil {
		return err
	}
	db, err := server.OpenDB(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer db.Close()
	v, err := db.Version(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Database %s is up to date (change version %d).\n", cfg.DatabaseKind(), v)
	return nil
}
