package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/store"
)

func newAuditCmd(e env) *cobra.Command {
	c := group("audit", "read the audit log: who changed which key or grant, and when",
		`Every change of a key or grant (created, imported, revoked, rolled, expiry
changed, grant set or revoked) is one audit event, written in the same
transaction as the change: who made it (admin token, CLI user, portal user),
from which address, in which request, and what changed. Never a secret.`)
	c.AddCommand(newAuditListCmd(e))
	return c
}

// auditPage is one page of audit list.
type auditPage struct {
	events []store.AuditEvent
	next   string
}

func newAuditListCmd(e env) *cobra.Command {
	var r admin.AuditRequest
	var since string
	c := &cobra.Command{
		Use:   "list",
		Short: "list audit events, newest first",
		Long: `List audit events, newest first, filtered by tenant, key, action and time.
--since takes an RFC 3339 time or a duration ago (24h, 7d). A page holds
--limit events; the command says on stderr how to ask for the next one.`,
		Example: `  keygate audit list --tenant acme --since 24h
  keygate audit list --key key_01J… --json
  keygate audit list --action key.revoked --since 7d`,
		Args: noArgs,
	}
	f := c.Flags()
	f.StringVar(&r.Tenant, "tenant", "", "only this tenant's events")
	f.StringVar(&r.KeyID, "key", "", "only this key's events (its id)")
	f.StringVar(&r.Action, "action", "", "only this action: "+strings.Join(store.Actions(), ", "))
	f.StringVar(&since, "since", "", "only events since this time (RFC 3339) or this long ago (24h, 7d)")
	f.IntVar(&r.Limit, "limit", admin.DefaultPageSize, fmt.Sprintf("at most this many events (1-%d)", admin.MaxPageSize))
	f.StringVar(&r.After, "after", "", "the cursor of the next page, as the previous page said")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, _ []string) (any, error) {
		var err error
		if r.Since, err = admin.ParseSince("--since", since, time.Now()); err != nil {
			return nil, err
		}
		evs, next, err := s.Audit(ctx, r)
		return auditPage{evs, next}, err
	})
	return c
}

func printEvents(w io.Writer, evs []store.AuditEvent) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tACTION\tTENANT\tKEY\tACTOR\tSOURCE\tDETAILS")
	for _, ev := range evs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s:%s\t%s\t%s\n", ev.At.UTC().Format(time.RFC3339), ev.Action, ev.Tenant,
			dash(ev.KeyID), ev.Actor.Type, ev.Actor.Name, dash(ev.SourceIP), details(ev.Details))
	}
	return tw.Flush()
}

// details writes an event's details as key=value, sorted, on one line.
func details(d map[string]any) string {
	ks := make([]string, 0, len(d))
	for k := range d {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	parts := make([]string, 0, len(ks))
	for _, k := range ks {
		v := d[k]
		if v == nil {
			v = "-"
		}
		parts = append(parts, fmt.Sprintf("%s=%v", k, v))
	}
	return strings.Join(parts, " ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
