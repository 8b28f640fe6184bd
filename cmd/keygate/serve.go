package main

import (
	"context"

	"github.com/keygate/keygate/server"
)

func cmdServe(ctx context.Context, args []string, e env) error {
	fs := newFlags("serve", e)
	cfgPath := configFlag(fs, e)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, log, err := loadConfig(*cfgPath, e)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
