package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
)

// explain gives a lifecycle error its exit status: 2 for a bad request, 1
// for anything else. Its text already reads once ("key key_x not found"),
// so it gets no prefix.
func explain(err error) error {
	if errors.Is(err, admin.ErrInvalid) {
		return &exitError{code: 2, err: err}
	}
	return err
}

// printResult prints what a key or grant command returns: text for a
// person, or with asJSON the admin API's JSON views.
func printResult(e env, v any, asJSON bool, now time.Time) error {
	w := e.stdout
	var view any
	switch v := v.(type) {
	case keyPage:
		if v.next != "" {
			// stderr, so that --json stays one JSON array.
			defer fmt.Fprintf(e.stderr, "More keys follow: add --after %s for the next page.\n", v.next)
		}
		return printResult(e, v.keys, asJSON, now)
	case auditPage:
		if v.next != "" {
			defer fmt.Fprintf(e.stderr, "More events follow: add --after %s for the next page.\n", v.next)
		}
		if !asJSON {
			return printEvents(w, v.events)
		}
		view = admin.ViewEvents(v.events)
	case admin.UsageView:
		view = v
		if !asJSON {
			return printUsage(w, v)
		}
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
	fmt.Fprintln(tw, "ID\tKEY\tTENANT\tENV\tSTATUS\tPLAN\tSCOPES\tCREATED\tLAST USED\tEXPIRES\tNETWORKS\tMETADATA")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s…%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Prefix, r.Last4, r.Tenant, r.Env,
			r.Status(now), r.Plan, strings.Join(r.Scopes, ","), stamp(r.CreatedAt), stamp(r.LastUsedAt), stamp(r.ExpiresAt),
			orDash(strings.Join(keys.FormatCIDRs(r.AllowedCIDRs), ",")), orDash(metaText(r.Metadata)))
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

// metaText writes metadata as sorted KEY=VALUE pairs, comma-separated.
func metaText(m map[string]string) string {
	pairs := make([]string, 0, len(m))
	for k, v := range m {
		pairs = append(pairs, k+"="+v)
	}
	slices.Sort(pairs)
	return strings.Join(pairs, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
