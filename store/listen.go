package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reconnection backoff of Listen.
const (
	listenBackoffMin = 50 * time.Millisecond
	listenBackoffMax = 2 * time.Second
)

// Listen implements Notifier. It holds a connection of its own (outside the
// pool, which must not lose a connection to a long wait), LISTENs on
// NotifyChannel, and calls changed once right after each successful
// (re)connect and once for every notice. When the connection drops it
// reconnects with exponential backoff capped at 2 s. It returns nil when
// ctx ends. changed runs on Listen's goroutine and should only signal (a
// non-blocking send on a buffered channel, say): a slow changed delays the
// next notice, though none is lost, and the caller's poll reads the actual
// changes anyway.
func (p *Postgres) Listen(ctx context.Context, changed func()) error {
	log := p.opts.Logger.With("database", "postgres", "channel", NotifyChannel)
	backoff := listenBackoffMin
	for {
		err := p.listenOnce(ctx, changed, func() { backoff = listenBackoffMin })
		if ctx.Err() != nil {
			return nil
		}
		log.WarnContext(ctx, "change notices interrupted; reconnecting", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, listenBackoffMax)
	}
}

// listenOnce connects, listens and relays notices until the connection
// fails or ctx ends. connected runs once LISTEN is in place.
func (p *Postgres) listenOnce(ctx context.Context, changed, connected func()) error {
	cfg := p.pool.Config().ConnConfig.Copy()
	cfg.DialFunc = dialer(p.opts.ConnectTimeout).DialContext
	cctx, cancel := context.WithTimeout(ctx, p.opts.ConnectTimeout)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	qctx, cancel := context.WithTimeout(ctx, p.opts.QueryTimeout)
	_, err = conn.Exec(qctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize())
	cancel()
	if err != nil {
		return err
	}
	connected()
	changed()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		changed()
	}
}
