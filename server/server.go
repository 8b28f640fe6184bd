// Package server builds and runs the whole Keygate server from a
// config.Config: the key database, the cache that follows it, the rate
// limiter, the usage recorder, the ext_authz gRPC service, the HTTP
// listener (health, metrics, /authz, the admin API), the events publisher
// (webhooks) and the portal listener (the API-keys portal, GitHub's secret scanning). `keygate serve`, the
// load harness and the process tests all build their server here, so
// that what is measured and tested is what users run.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/secretscan"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/web"
)

// Server is one Keygate process's server. New validates and builds what
// needs no I/O; Run opens the database, listens and serves until its
// context ends, then drains in-flight checks and flushes.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	formats *keys.Formats
	hasher  *keys.Hasher
	policy  *policy.Policy
	events  events.Config // with its endpoints' secrets read

	ready chan struct{} // closed once both listeners are bound
	mu    sync.Mutex    // guards what Run sets for the accessors
	grpcA net.Addr
	httpA net.Addr
	portA net.Addr // nil: no portal listener
	kc    *cache.Cache
	lim   *limits.Limiter
	// console, once httpMux has built it; consoleLinkOut is where the
	// one-time console link goes (os.Stderr) when no admin token is set.
	console        *web.Console
	consoleLinkOut io.Writer
}

// New validates cfg and builds the parts of the server that need no I/O.
// It starts nothing: Run does.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		return nil, errors.New("server: a logger is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	formats, err := keys.NewFormats(cfg.Formats())
	if err != nil {
		return nil, err
	}
	pol, err := policy.New(cfg.Policy())
	if err != nil {
		return nil, err
	}
	ev, err := cfg.Publisher(os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &Server{
		cfg: cfg, log: log, formats: formats, policy: pol, events: ev,
		hasher: keys.NewHasher([]byte(cfg.Database.Pepper)),
		ready:  make(chan struct{}), consoleLinkOut: os.Stderr,
	}, nil
}

// Ready is closed once Run has bound its listeners; Addrs then tells
// where (tests and the harness listen on port 0).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound gRPC and HTTP addresses, nil before Ready.
func (s *Server) Addrs() (grpcAddr, httpAddr net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grpcA, s.httpA
}

// PortalAddr returns the bound portal address (portal.addr), nil before
// Ready or when nothing is served there.
func (s *Server) PortalAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.portA
}

// Stats are the counters of a running server's cache and limiter.
type Stats struct {
	Cache  cache.Stats
	Limits limits.Stats
}

// Stats reads the running server's counters (zero before Ready).
func (s *Server) Stats() Stats {
	s.mu.Lock()
	kc, lim := s.kc, s.lim
	s.mu.Unlock()
	var st Stats
	if kc != nil {
		st.Cache = kc.Stats()
	}
	if lim != nil {
		st.Limits = lim.Stats()
	}
	return st
}

// Run serves until ctx ends. On the way out it stops taking checks,
// drains those in flight (up to shutdown_timeout), then flushes usage
// and stops the background work.
func (s *Server) Run(ctx context.Context) error {
	cfg, log := s.cfg, s.log
	db, err := OpenDB(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer db.Close()
	p, err := s.build(db)
	if err != nil {
		return err
	}
	defer p.close()

	gs, err := s.grpcServer(p)
	if err != nil {
		return err
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	for _, name := range []string{"", authzService} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	mux, err := s.httpMux(p, db)
	if err != nil {
		return err
	}

	glis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc_addr: %w", err)
	}
	hlis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		glis.Close()
		return fmt.Errorf("http_addr: %w", err)
	}
	psrv, err := s.portalServer(p, db)
	if err != nil {
		glis.Close()
		hlis.Close()
		return err
	}
	var plis net.Listener
	if psrv != nil {
		if plis, err = net.Listen("tcp", cfg.Portal.Addr); err != nil {
			glis.Close()
			hlis.Close()
			return fmt.Errorf("portal.addr: %w", err)
		}
		log.Info("portal listening", slog.String("portal_addr", plis.Addr().String()), slog.String("public_url", cfg.Portal.PublicURL))
		if cfg.SecretScanning.Enabled {
			log.Info("secret scanning: GitHub posts leaked keys to "+secretscan.Path, slog.String("portal_addr", plis.Addr().String()),
				slog.String("action", cfg.SecretScanning.Action))
		}
	}
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("keygate serving", slog.String("grpc_addr", glis.Addr().String()), slog.String("http_addr", hlis.Addr().String()),
		slog.String("database", cfg.DatabaseKind()), slog.Bool("redis", cfg.Redis.URL != ""), slog.Bool("tls", cfg.TLS.CertFile != ""),
		slog.Bool("fast_encoder", extauthz.FastEncoding()))
	s.mu.Lock()
	s.grpcA, s.httpA, s.kc, s.lim = glis.Addr(), hlis.Addr(), p.cache, p.limiter
	if plis != nil {
		s.portA = plis.Addr()
	}
	s.mu.Unlock()
	close(s.ready)
	s.printConsoleLink(ctx, hlis.Addr())

	// Background work outlives the listeners: it stops only after in-flight
	// Checks have drained, so their last_used_at writes are flushed.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var bgGroup errgroup.Group
	bgGroup.Go(func() error { return p.cache.Run(bg) })
	bgGroup.Go(func() error { return p.usage.Run(bg) })
	bgGroup.Go(func() error { return p.limiter.Run(bg) })
	bgGroup.Go(func() error { return p.events.Run(bg) })
	if n, ok := db.(store.Notifier); ok {
		bgGroup.Go(func() error { return n.Listen(bg, p.changed) })
	}
	bgGroup.Go(func() error { return followReadiness(bg, p.cache, cfg.Cache.StaleReady, hs) })
	bgGroup.Go(func() error {
		return prune(bg, log, 4*cfg.Database.Timeout, []pruner{
			{what: "audit events", retention: cfg.Audit.Retention, prune: db.PruneAudit},
			{what: "webhook events", retention: cfg.Webhooks.Retention, prune: db.PruneEvents},
			{what: "usage counts", retention: cfg.Usage.Retention, prune: db.PruneUsage},
		})
	})

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(glis) })
	g.Go(func() error {
		if err := hsrv.Serve(hlis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if psrv != nil {
		g.Go(func() error { return servePortal(gctx, psrv, plis, cfg.ShutdownTimeout) })
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining in-flight checks", slog.Duration("timeout", cfg.ShutdownTimeout))
		hs.Shutdown() // health reports NOT_SERVING so proxies stop sending
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		timer := time.NewTimer(cfg.ShutdownTimeout)
		defer timer.Stop()
		select {
		case <-stopped:
		case <-timer.C:
			log.Warn("shutdown timeout: closing remaining connections")
			gs.Stop()
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		return hsrv.Shutdown(sctx)
	})
	err = g.Wait()
	stopBG()
	if bgErr := bgGroup.Wait(); bgErr != nil {
		log.Error("flushing on shutdown", slog.Any("error", bgErr))
		if err == nil {
			err = bgErr
		}
	}
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	log.Info("keygate stopped")
	return err
}
