package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
)

func newWebhooksCmd(e env) *cobra.Command {
	c := group("webhooks", "see webhook deliveries, test an endpoint, make a signing secret",
		`Keygate sends every key and grant change, expiry notices, a key's first 429
in a window and leaked keys to the endpoints under webhooks.endpoints, signed
as Standard Webhooks sign them (webhook-id, webhook-timestamp,
webhook-signature), retrying each with backoff until webhooks.max_age.`)
	c.AddCommand(newWebhooksDeliveriesCmd(e), newWebhooksTestCmd(e), newWebhooksSecretCmd(e))
	return c
}

// deliveryView is a delivery as --json prints it.
type deliveryView struct {
	EventID   string     `json:"event_id"`
	Type      string     `json:"type"`
	Tenant    string     `json:"tenant"`
	KeyID     string     `json:"key_id,omitempty"`
	At        time.Time  `json:"at"`
	Endpoint  string     `json:"endpoint"`
	Status    string     `json:"status"`
	Attempts  int        `json:"attempts"`
	NextAt    *time.Time `json:"next_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	LastCode  int        `json:"last_code,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

func viewDelivery(d store.Delivery) deliveryView {
	v := deliveryView{EventID: d.Event.ID, Type: d.Event.Type, Tenant: d.Event.Tenant, KeyID: d.Event.KeyID, At: d.Event.At,
		Endpoint: d.Endpoint, Status: d.Status, Attempts: d.Attempts, UpdatedAt: d.UpdatedAt, LastCode: d.LastCode, LastError: d.LastError}
	if d.Status == store.DeliveryPending {
		next := d.NextAt
		v.NextAt = &next
	}
	return v
}

func newWebhooksDeliveriesCmd(e env) *cobra.Command {
	var failed, pending bool
	var f store.DeliveryFilter
	c := &cobra.Command{
		Use:   "deliveries [--failed | --pending]",
		Short: "list webhook deliveries, newest event first",
		Long: `List webhook deliveries, newest event first: each event to each endpoint, its
status (pending, delivered, failed), attempts, and the last attempt's HTTP
status or error. --failed lists those given up (past webhooks.max_age, or
answered 410 Gone); --pending those still being retried.`,
		Example: `  keygate webhooks deliveries --failed
  keygate webhooks deliveries --pending --json`,
		Args: noArgs,
	}
	fl := c.Flags()
	fl.BoolVar(&failed, "failed", false, "only deliveries given up")
	fl.BoolVar(&pending, "pending", false, "only deliveries not yet delivered")
	fl.IntVar(&f.Limit, "limit", 50, "at most this many deliveries (1-1000)")
	fl.StringVar(&f.After, "after", "", "the cursor of the next page, as the previous page said")
	cfgPath := configFlag(c, e)
	asJSON := jsonFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		switch {
		case failed && pending:
			return usageError(c, "--failed and --pending exclude each other")
		case f.Limit < 1 || f.Limit > 1000:
			return valueError("--limit: must be from 1 to 1000, got %d", f.Limit)
		case f.After != "" && !store.ValidEventID(f.After):
			return valueError("--after: %q is not an event id (use the cursor the previous page printed)", f.After)
		case failed:
			f.Status = store.DeliveryFailed
		case pending:
			f.Status = store.DeliveryPending
		}
		cfg, log, err := loadConfig(cfgPath(), e)
		if err != nil {
			return err
		}
		db, err := server.OpenDB(c.Context(), cfg, log, false)
		if err != nil {
			return err
		}
		defer db.Close()
		limit := f.Limit
		f.Limit++ // one more tells whether another page follows
		ds, err := db.Deliveries(c.Context(), f)
		if err != nil {
			return err
		}
		if len(ds) > limit {
			ds = ds[:limit]
			defer fmt.Fprintf(e.stderr, "More deliveries follow: add --after %s for the next page.\n", ds[len(ds)-1].Event.ID)
		}
		if *asJSON {
			vs := make([]deliveryView, len(ds))
			for i, d := range ds {
				vs[i] = viewDelivery(d)
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(vs)
		}
		return printDeliveries(e.stdout, ds)
	}
	return c
}

func printDeliveries(w io.Writer, ds []store.Delivery) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EVENT\tTYPE\tTENANT\tENDPOINT\tSTATUS\tATTEMPTS\tLAST\tNEXT")
	for _, d := range ds {
		last := "-"
		switch {
		case d.LastError != "":
			last = d.LastError
		case d.LastCode != 0:
			last = fmt.Sprintf("HTTP %d", d.LastCode)
		}
		next := "-"
		if d.Status == store.DeliveryPending {
			next = stamp(d.NextAt)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Event.ID, d.Event.Type, d.Event.Tenant, d.Endpoint, d.Status,
			d.Attempts, last, next)
	}
	return tw.Flush()
}

func newWebhooksTestCmd(e env) *cobra.Command {
	c := &cobra.Command{
		Use:   "test URL",
		Short: "send a signed webhook.test event to a configured endpoint now",
		Long: `Send one webhook.test event to URL at once, signed with its secret from
webhooks.endpoints, and say what the endpoint answered. Nothing is stored:
use it to check an endpoint's address and its verification of signatures.`,
		Example:     `  keygate webhooks test https://hooks.example.com/keygate`,
		Args:        oneArg("endpoint's URL, as webhooks.endpoints has it"),
		Annotations: map[string]string{annArgs: "URL  an endpoint's url in webhooks.endpoints"},
	}
	cfgPath := configFlag(c, e)
	c.RunE = func(c *cobra.Command, args []string) error {
		cfg, _, err := loadConfig(cfgPath(), e)
		if err != nil {
			return err
		}
		eps, err := cfg.WebhookEndpoints(e.lookup)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(eps, func(ep events.Endpoint) bool { return ep.URL == args[0] })
		if i < 0 {
			urls := make([]string, len(eps))
			for j, ep := range eps {
				urls[j] = ep.URL
			}
			have := "none is configured"
			if len(urls) > 0 {
				have = "configured: " + strings.Join(urls, ", ")
			}
			return valueError("%s is not one of webhooks.endpoints (%s); its secret is there", args[0], have)
		}
		start := time.Now()
		code, err := events.SendTest(c.Context(), eps[i], cliCaller(e).Actor, nil, cfg.Webhooks.Timeout)
		if err != nil {
			return fmt.Errorf("%s: %w", args[0], err)
		}
		fmt.Fprintf(e.stdout, "%s answered %d in %s: it took a signed %s event.\n", args[0], code,
			time.Since(start).Round(time.Millisecond), events.TypeTest)
		return nil
	}
	return c
}

func newWebhooksSecretCmd(e env) *cobra.Command {
	return &cobra.Command{
		Use:   "secret",
		Short: "make a new signing secret for a webhook endpoint",
		Long: `Make a new signing secret (32 random bytes, written whsec_<base64> as
Standard Webhooks write them) for an endpoint under webhooks.endpoints. Give
it to the receiver, which verifies every webhook with it, and to Keygate,
best through an environment variable named by secret_env.`,
		Example: `  keygate webhooks secret`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			s, err := events.NewSecret()
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, s)
			return nil
		},
	}
}
