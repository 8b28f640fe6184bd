package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

func newKeysUsageCmd(e env) *cobra.Command {
	var since, until, granularity string
	c := &cobra.Command{
		Use:   "usage ID",
		Short: "show a key's decisions per hour or day, and a sparkline",
		Long: `Show how a key was used: per hour (or UTC day), how many checks it was
allowed, rate limited (429) and denied (revoked, expired, route, organization,
scope), as a table of the hours or days with decisions and a one-line
sparkline of every hour or day of the range (▁ is none).

Servers write usage every usage.flush_interval (10 s), so the newest counts
lag by up to that. --since and --until take an RFC 3339 time or a duration
ago (24h, 7d); usage is kept for usage.retention (90 days).`,
		Example: `  keygate keys usage key_01J…
  keygate keys usage key_01J… --since 30d --granularity day
  keygate keys usage key_01J… --since 2026-03-01T00:00:00Z --until 2026-03-02T00:00:00Z --json`,
		Args:        oneArg("key id"),
		Annotations: map[string]string{annArgs: keyIDArg},
	}
	f := c.Flags()
	f.StringVar(&since, "since", "7d", "from this time (RFC 3339) or this long ago (24h, 7d)")
	f.StringVar(&until, "until", "", "up to this time (RFC 3339) or this long ago (default: now)")
	f.StringVar(&granularity, "granularity", "hour", "hour or day (UTC days)")
	lifecycle(c, e, func(ctx context.Context, s *admin.Service, args []string) (any, error) {
		now := time.Now()
		var q admin.UsageQuery
		var err error
		if q.Since, err = admin.ParseSince("--since", since, now); err != nil {
			return nil, err
		}
		if q.Until, err = admin.ParseSince("--until", until, now); err != nil {
			return nil, err
		}
		q.Granularity = granularity
		return s.KeyUsage(ctx, args[0], q)
	})
	return c
}

// printUsage writes the buckets with decisions as a table, then the
// sparkline of all of them and the range's totals.
func printUsage(w io.Writer, v admin.UsageView) error {
	unit, layout := v.Granularity, "2006-01-02T15:04Z"
	if unit == "day" {
		layout = "2006-01-02"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tALLOWED\tRATE_LIMITED\tDENIED\n", strings.ToUpper(unit))
	var total admin.UsageBucket
	quiet := 0
	for _, b := range v.Buckets {
		total.Allowed, total.RateLimited, total.Denied = total.Allowed+b.Allowed, total.RateLimited+b.RateLimited, total.Denied+b.Denied
		if b.Allowed+b.RateLimited+b.Denied == 0 {
			quiet++
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", b.Start.UTC().Format(layout), b.Allowed, b.RateLimited, b.Denied)
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\n", total.Allowed, total.RateLimited, total.Denied)
	if err := tw.Flush(); err != nil {
		return err
	}
	if quiet > 0 {
		fmt.Fprintf(w, "(%d %ss without decisions not listed)\n", quiet, unit)
	}
	if len(v.Buckets) > 0 {
		first, last := v.Buckets[0].Start.UTC(), v.Buckets[len(v.Buckets)-1].Start.UTC()
		fmt.Fprintf(w, "%s %s … %s  decisions per %s\n", sparkline(v.Buckets), first.Format(layout), last.Format(layout), unit)
	}
	return nil
}

// sparkBlocks are the sparkline's levels: none, then seven heights.
var sparkBlocks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws each bucket's decisions (allowed, rate limited and
// denied) as a block: ▁ for none, ▂ to █ scaled to the busiest bucket, so
// that a bucket with any decision is never drawn as none.
func sparkline(bs []admin.UsageBucket) string {
	var peak int64
	for _, b := range bs {
		peak = max(peak, b.Allowed+b.RateLimited+b.Denied)
	}
	var s strings.Builder
	for _, b := range bs {
		n := b.Allowed + b.RateLimited + b.Denied
		level := 0
		if n > 0 {
			level = int((n*7 + peak - 1) / peak) // 1..7, rounded up
		}
		s.WriteRune(sparkBlocks[level])
	}
	return s.String()
}
