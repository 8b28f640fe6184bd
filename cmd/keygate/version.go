package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/keygate/keygate/extauthz"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

type buildInfo struct {
	Version  string `json:"version"`
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	// Encoder is how responses are encoded: "vtprotobuf" when built with
	// -tags vtprotobuf (the Makefile and the image do), else "reflection".
	Encoder string `json:"encoder"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Go: runtime.Version(), Encoder: "reflection"}
	if extauthz.FastEncoding() {
		b.Encoder = "vtprotobuf"
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
		if b.Version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
	}
	return b
}

func cmdVersion(args []string, e env) error {
	fs := newFlags("version", e)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	b := readBuildInfo()
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
	cfg, err := loadConfig(*cfgPath, e)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, cfg, newLogger(cfg.Log, e.stderr))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	v, err := db.Version(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Database %s is up to date (change version %d).\n", dbKind(cfg.Database.URL), v)
	return nil
}
