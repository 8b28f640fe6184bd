package server

import (
	"context"
	"log/slog"
	"time"
)

// pruneInterval paces the retention loop: rows are kept for days, so
// deleting what passed its retention once an hour is soon enough.
const pruneInterval = time.Hour

// pruner deletes what passed its retention: rows made before the time it
// is given. It says how many it deleted.
type pruner struct {
	what      string // for the log: "audit events"
	retention time.Duration
	prune     func(ctx context.Context, before time.Time) (int64, error)
}

// prune runs each pruner at once and then every pruneInterval until ctx
// ends. A failure is logged and tried again next time: nothing is lost by
// keeping rows longer.
func prune(ctx context.Context, log *slog.Logger, timeout time.Duration, ps []pruner) error {
	t := time.NewTicker(pruneInterval)
	defer t.Stop()
	for {
		for _, p := range ps {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			n, err := p.prune(pctx, time.Now().Add(-p.retention))
			cancel()
			switch {
			case err != nil && ctx.Err() == nil:
				log.Warn("pruning failed; will retry", slog.String("what", p.what), slog.Any("error", err))
			case n > 0:
				log.Info("pruned past retention", slog.String("what", p.what), slog.Int64("rows", n), slog.Duration("retention", p.retention))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
