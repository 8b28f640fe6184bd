package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/secretscan"
	"github.com/keygate/keygate/store"
)

// changed tells the server's own followers of the key database — the
// cache and the events publisher — that it has changed, so that they
// need not wait for their next poll.
func (p *parts) changed() {
	p.cache.Notify()
	p.events.Notify()
}

// registerEventsMetrics exposes the publisher's counters: no label per
// key or endpoint.
func registerEventsMetrics(reg prometheus.Registerer, pub *events.Publisher) error {
	counter := func(name, help string, f func(events.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(pub.Stats())) })
	}
	for _, c := range []prometheus.Collector{
		counter("keygate_webhook_deliveries_total", "Webhook deliveries an endpoint took (2xx).",
			func(s events.Stats) uint64 { return s.Delivered }),
		counter("keygate_webhook_attempt_failures_total", "Webhook attempts that failed (no answer, or not 2xx); most are retried.",
			func(s events.Stats) uint64 { return s.AttemptsFailed }),
		counter("keygate_webhook_deliveries_failed_total", "Webhook deliveries given up: past webhooks.max_age, or 410 Gone.",
			func(s events.Stats) uint64 { return s.Failed }),
		counter("keygate_events_notices_dropped_total", "key.rate_limited notices not queued because the writer was behind (the key's next 429 tries again).",
			func(s events.Stats) uint64 { return s.NoticesDropped }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_webhook_oldest_pending_seconds",
			Help: "Age of the oldest event not yet delivered or given up, as this replica last read it (0: none)."},
			func() float64 {
				if t := pub.Stats().OldestUndelivered; !t.IsZero() {
					return time.Since(t).Seconds()
				}
				return 0
			}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// portalServer serves the listener meant to face the internet
// (portal.addr): the tenants' API-keys portal and, when
// secret_scanning.enabled is set, GitHub's secret scanning endpoint.
// nil: no portal.addr, nothing to serve.
func (s *Server) portalServer(p *parts, db store.DB) (*http.Server, error) {
	cfg := s.cfg
	if cfg.Portal.Addr == "" {
		return nil, nil
	}
	svc, err := s.newAdmin(db, p.changed)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	ph, err := s.portal(svc)
	if err != nil {
		return nil, err
	}
	mux.Handle("/portal/", ph)
	if cfg.SecretScanning.Enabled {
		h, err := secretscan.New(secretscan.Config{
			Formats: s.formats, Hasher: s.hasher, Action: secretscan.Action(cfg.SecretScanning.Action),
			KeysURL: cfg.SecretScanning.GitHub.KeysURL,
		}, db, svc, s.log.With(slog.String("component", "secret_scanning")))
		if err != nil {
			return nil, err
		}
		mux.Handle(secretscan.Path, h)
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}, nil
}

// servePortal serves srv on lis until ctx ends, then shuts it down
// within timeout.
func servePortal(ctx context.Context, srv *http.Server, lis net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("portal listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
