package main

import (
	"context"
	"time"
)

func cmdGrants(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		return usageErr("grants: need a subcommand: set, list or revoke")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("grants "+sub, e)
	cfgPath := configFlag(fs, e)
	asJSON := fs.Bool("json", false, "print JSON")
	tenant := fs.String("tenant", "", "the tenant whose keys the grant covers")
	var org, scopes *string
	switch sub {
	case "set":
		org = fs.String("org", "", "the organization the tenant may act in (required)")
		scopes = fs.String("scopes", "", "comma-separated scopes granted in the organization")
	case "revoke":
		org = fs.String("org", "", "the organization (required)")
	case "list":
	default:
		return usageErr("grants: unknown subcommand %q (want set, list or revoke)", sub)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(pos); err != nil {
		return err
	}
	svc, db, _, err := openAdmin(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer db.Close()
	var out any
	switch sub {
	case "set":
		out, err = svc.SetGrant(ctx, *tenant, *org, splitList(*scopes))
	case "revoke":
		out, err = svc.RevokeGrant(ctx, *tenant, *org)
	case "list":
		out, err = svc.ListGrants(ctx, *tenant)
	}
	if err != nil {
		return explain(err)
	}
	return printResult(e.stdout, out, *asJSON, time.Now())
}
