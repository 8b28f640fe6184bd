package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

func cmdKeys(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		return usageErr("keys: need a subcommand: create, list, show, revoke, roll or import")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("keys "+sub, e)
	cfgPath := configFlag(fs, e)
	asJSON := fs.Bool("json", false, "print JSON")
	var run func(context.Context, *admin.Service, []string) (any, error)
	switch sub {
	case "create":
		var r admin.CreateRequest
		var scopes, env string
		fs.StringVar(&r.Tenant, "tenant", "", "tenant the key belongs to (required)")
		fs.StringVar(&r.Name, "name", "", "a label for the key")
		fs.StringVar(&env, "env", "", "test or live (default test, or the env of --prefix)")
		fs.StringVar(&r.Prefix, "prefix", "", "key format prefix, e.g. sk_live_ (default: the env's format)")
		fs.StringVar(&scopes, "scopes", "", "comma-separated scopes, e.g. patients:read,forms:write")
		fs.StringVar(&r.Plan, "plan", "", "rate-limit plan (default: the env's name)")
		fs.DurationVar(&r.ExpiresIn, "expires-in", 0, "expire the key after this long, e.g. 720h (default never)")
		run = func(ctx context.Context, s *admin.Service, pos []string) (any, error) {
			if err := noArgs(pos); err != nil {
				return nil, err
			}
			r.Env, r.Scopes = keys.Env(env), splitList(scopes)
			c, err := s.Create(ctx, r)
			return c, err
		}
	case "import":
		var r admin.ImportRequest
		var scopes string
		fs.StringVar(&r.SHA256, "sha256", "", "SHA-256 of the key, 64 hex digits (required)")
		fs.StringVar(&r.Prefix, "prefix", "", "the key's format prefix, e.g. cc_live_ (required)")
		fs.StringVar(&r.DisplayPrefix, "display-prefix", "", "the key's first 15 characters, if known")
		fs.StringVar(&r.Last4, "last4", "", "the key's last 4 characters, if known")
		fs.StringVar(&r.Tenant, "tenant", "", "tenant the key belongs to (required)")
		fs.StringVar(&r.Name, "name", "", "a label for the key")
		fs.StringVar(&scopes, "scopes", "", "comma-separated scopes")
		fs.StringVar(&r.Plan, "plan", "", "rate-limit plan (default: the env's name)")
		run = func(ctx context.Context, s *admin.Service, pos []string) (any, error) {
			if err := noArgs(pos); err != nil {
				return nil, err
			}
			r.Scopes = splitList(scopes)
			return s.Import(ctx, r)
		}
	case "list":
		var r admin.ListRequest
		fs.StringVar(&r.Tenant, "tenant", "", "only this tenant's keys")
		fs.BoolVar(&r.IncludeRevoked, "all", false, "include revoked keys")
		fs.IntVar(&r.Limit, "limit", 0, "at most this many keys")
		fs.StringVar(&r.After, "after", "", "only keys with an id after this one (paging)")
		run = func(ctx context.Context, s *admin.Service, pos []string) (any, error) {
			if err := noArgs(pos); err != nil {
				return nil, err
			}
			rs, _, err := s.List(ctx, r)
			return rs, err
		}
	case "show", "revoke":
		run = func(ctx context.Context, s *admin.Service, pos []string) (any, error) {
			id, err := oneArg(pos, "key id")
			if err != nil {
				return nil, err
			}
			if sub == "show" {
				return s.Show(ctx, id)
			}
			return s.Revoke(ctx, id)
		}
	case "roll":
		grace := fs.Duration("grace", 0, "how long the old key keeps working (default roll.grace, 24h)")
		run = func(ctx context.Context, s *admin.Service, pos []string) (any, error) {
			id, err := oneArg(pos, "key id")
			if err != nil {
				return nil, err
			}
			old, c, err := s.Roll(ctx, id, *grace)
			return rolled{old, c}, err
		}
	default:
		return usageErr("keys: unknown subcommand %q (want create, list, show, revoke, roll or import)", sub)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	svc, db, _, err := openAdmin(ctx, *cfgPath, e)
	if err != nil {
		return err
	}
	defer db.Close()
	out, err := run(ctx, svc, pos)
	if err != nil {
		return explain(err)
	}
	return printResult(e.stdout, out, *asJSON, time.Now())
}

type rolled struct {
	old keys.Record
	new admin.Created
}

func noArgs(pos []string) error {
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	return nil
}

func oneArg(pos []string, what string) (string, error) {
	if len(pos) != 1 {
		return "", usageErr("need exactly one argument: the %s", what)
	}
	return pos[0], nil
}

func splitList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// explain turns store errors into messages for a person at a terminal.
func explain(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &exitError{code: 1, err: fmt.Errorf("not found: %w", err)}
	case errors.Is(err, store.ErrConflict):
		return &exitError{code: 1, err: fmt.Errorf("already exists: %w", err)}
	case errors.Is(err, admin.ErrAlreadyRevoked):
		return &exitError{code: 1, err: err}
	case errors.Is(err, admin.ErrInvalid):
		return &exitError{code: 2, err: err}
	}
	return err
}

func printResult(w io.Writer, v any, asJSON bool, now time.Time) error {
	var view any
	switch v := v.(type) {
	case admin.Created:
		view = admin.ViewCreated(v, now)
		if !asJSON {
			fmt.Fprintf(w, "Created %s key %s for tenant %s (plan %s).\n", v.Record.Env, v.Record.ID, v.Record.Tenant, v.Record.Plan)
			fmt.Fprintf(w, "Secret, shown only now; store it safely:\n\n  %s\n\n", v.Key)
			return nil
		}
	case rolled:
		view = struct {
			admin.KeyView
			Old admin.KeyView `json:"old"`
		}{admin.ViewCreated(v.new, now), admin.ViewKey(v.old, now)}
		if !asJSON {
			fmt.Fprintf(w, "Rolled %s to %s. The old key works until %s.\n", v.old.ID, v.new.Record.ID, v.old.ExpiresAt.Format(time.RFC3339))
			fmt.Fprintf(w, "New secret, shown only now; store it safely:\n\n  %s\n\n", v.new.Key)
			return nil
		}
	case keys.Record:
		view = admin.ViewKey(v, now)
		if !asJSON {
			return printKeys(w, []keys.Record{v}, now)
		}
	case []keys.Record:
		vs := make([]admin.KeyView, len(v))
		for i, r := range v {
			vs[i] = admin.ViewKey(r, now)
		}
		view = vs
		if !asJSON {
			return printKeys(w, v, now)
		}
	case keys.Grant:
		view = admin.ViewGrant(v)
		if !asJSON {
			return printGrants(w, []keys.Grant{v})
		}
	case []keys.Grant:
		vs := make([]admin.GrantView, len(v))
		for i, g := range v {
			vs[i] = admin.ViewGrant(g)
		}
		view = vs
		if !asJSON {
			return printGrants(w, v)
		}
	default:
		return fmt.Errorf("internal: cannot print %T", v)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(view)
}

func printKeys(w io.Writer, rs []keys.Record, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKEY\tTENANT\tENV\tSTATUS\tPLAN\tSCOPES\tCREATED\tLAST USED\tEXPIRES")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s…%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Prefix, r.Last4, r.Tenant, r.Env,
			r.Status(now), r.Plan, strings.Join(r.Scopes, ","), stamp(r.CreatedAt), stamp(r.LastUsedAt), stamp(r.ExpiresAt))
	}
	return tw.Flush()
}

func printGrants(w io.Writer, gs []keys.Grant) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tORG\tSCOPES\tUPDATED\tSTATUS")
	for _, g := range gs {
		st := "active"
		if !g.Active() {
			st = "revoked"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.Tenant, g.Org, strings.Join(g.Scopes, ","), stamp(g.UpdatedAt), st)
	}
	return tw.Flush()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
