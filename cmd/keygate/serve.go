package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/certs"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/usage"
)

// authzService is the name Envoy's gRPC health checks may ask about.
const authzService = "envoy.service.auth.v3.Authorization"

func cmdServe(ctx context.Context, args []string, e env) error {
	fs := newFlags("serve", e)
	cfgPath := configFlag(fs, e)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, e)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, e.stderr)
	return serve(ctx, cfg, log, nil)
}

// serve runs Keygate until ctx ends. started, if set, receives the bound
// addresses (tests listen on port 0).
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, started func(grpcAddr, httpAddr net.Addr)) error {
	db, err := openDB(ctx, cfg, log)
	if err != nil {
		return fmt.Errorf("opening the key database: %w", err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrating the key database: %w", err)
	}
	formats, err := buildFormats(cfg)
	if err != nil {
		return err
	}
	pol, err := buildPolicy(cfg)
	if err != nil {
		return err
	}
	lim, err := limits.New(limitsConfig(cfg), log)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer lim.Close()
	if cfg.Redis.URL == "" {
		log.Warn("no redis.url configured: rate limits are kept in this process only, correct for a single replica")
	}
	kc, err := cache.New(cache.Config{
		MaxKeys: cfg.Cache.MaxKeys, NegativeTTL: cfg.Cache.NegativeTTL, PollInterval: cfg.Database.PollInterval,
		QueryTimeout: cfg.Database.Timeout, WarmStart: cfg.Cache.WarmStart,
		NegativeMax: cfg.Cache.NegativeMax, MissLookups: cfg.Cache.MissLookupsPerSecond,
	}, db, log)
	if err != nil {
		return err
	}
	defer kc.Close()
	rec, err := usage.New(usage.Config{FlushInterval: cfg.Database.LastUsedFlush, Timeout: cfg.Database.Timeout}, db, log)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := extauthz.NewMetrics(reg)
	if err != nil {
		return err
	}
	if err := registerStateMetrics(reg, kc, lim); err != nil {
		return err
	}
	var failures *limits.Failures
	if w := cfg.Auth.Failures; w.Limit > 0 {
		if failures, err = limits.NewFailures(limits.Window{Limit: w.Limit, Period: w.Period}, nil); err != nil {
			return err
		}
		defer failures.Close()
	}
	ecfg := extauthz.Config{
		Formats: formats, Hasher: keys.NewHasher([]byte(cfg.Database.Pepper)), Policy: pol,
		Headers: extauthz.HeaderNames{
			Auth: cfg.Auth.Header, Org: cfg.Organization.Header,
			KeyID: cfg.Headers.KeyID, Tenant: cfg.Headers.Tenant, OrgOut: cfg.Headers.Org,
			Env: cfg.Headers.Env, Scopes: cfg.Headers.Scopes, Plan: cfg.Headers.Plan,
		},
		Realm:         cfg.Auth.Realm,
		Errors:        errorFormat(cfg.Errors),
		Introspection: extauthz.Introspection{Path: cfg.Introspection.Path, Methods: cfg.Introspection.Methods},
		TrustedHops:   cfg.Auth.TrustedHops,
	}
	if failures != nil { // a nil *Failures must not become a non-nil interface
		ecfg.Failures = failures
	}
	srv, err := extauthz.New(ecfg, kc, lim, rec, metrics, log)
	if err != nil {
		return err
	}

	opts, err := extauthz.ServerOptions()
	if err != nil {
		return err
	}
	opts = append(opts,
		grpc.MaxRecvMsgSize(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxConcurrentStreams(1024),
	)
	if cfg.TLS.CertFile != "" {
		rl, err := certs.New(certs.Config{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile,
			ClientCAFile: cfg.TLS.ClientCAFile, RequireClientCert: cfg.TLS.RequireClientCert})
		if err != nil {
			return err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(rl.TLSConfig())))
	}
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	for _, name := range []string{"", authzService} {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := readiness(kc, cfg.Cache.StaleReady)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, why)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle(extauthz.HTTPPrefix, srv.HTTPHandler())
	mux.Handle(extauthz.HTTPPrefix+"/", srv.HTTPHandler())
	if cfg.Admin.Token != "" {
		svc, err := newAdmin(cfg, db)
		if err != nil {
			return err
		}
		ah, err := admin.NewHandler(svc, cfg.Admin.Token, log)
		if err != nil {
			return err
		}
		mux.Handle("/admin/v1/", ah)
	} else {
		log.Info("admin API off: admin.token (KEYGATE_ADMIN_TOKEN) is empty")
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
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("keygate serving", slog.String("grpc_addr", glis.Addr().String()), slog.String("http_addr", hlis.Addr().String()),
		slog.String("database", dbKind(cfg.Database.URL)), slog.Bool("redis", cfg.Redis.URL != ""), slog.Bool("tls", cfg.TLS.CertFile != ""),
		slog.Bool("fast_encoder", extauthz.FastEncoding()))
	if started != nil {
		started(glis.Addr(), hlis.Addr())
	}

	// Background work outlives the listeners: it stops only after in-flight
	// Checks have drained, so their last_used_at writes are flushed.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	var bgGroup errgroup.Group
	bgGroup.Go(func() error { return kc.Run(bg) })
	bgGroup.Go(func() error { return rec.Run(bg) })
	bgGroup.Go(func() error { return lim.Run(bg) })
	if n, ok := db.(store.Notifier); ok {
		bgGroup.Go(func() error { return n.Listen(bg, kc.Notify) })
	}
	bgGroup.Go(func() error { return followReadiness(bg, kc, cfg.Cache.StaleReady, hs) })

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(glis) })
	g.Go(func() error {
		if err := hsrv.Serve(hlis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
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

func errorFormat(e config.Errors) *extauthz.ErrorFormat {
	f := &extauthz.ErrorFormat{Flat: e.Shape == "flat", CodeField: e.Fields.Code, MessageField: e.Fields.Message,
		TypeField: e.Fields.Type, RequestIDField: e.Fields.RequestID, Overrides: map[string]extauthz.ErrorText{}}
	for k, v := range e.Overrides {
		f.Overrides[k] = extauthz.ErrorText(v)
	}
	return f
}

// readiness says whether this replica should get traffic: its cache is
// loaded and its key database reachable (or staleReady allows serving
// cached keys without it). The text says why.
func readiness(kc *cache.Cache, staleReady bool) (bool, string) {
	switch {
	case !kc.Ready():
		return false, "not ready: loading the key cache (is the key database reachable?)"
	case !kc.DBUp() && staleReady:
		return true, "ready: key database unreachable, serving cached keys (unknown keys get 503)"
	case !kc.DBUp():
		return false, "not ready: key database unreachable (cached keys are still served; set cache.stale_ready to stay ready)"
	}
	return true, "ready"
}

// followReadiness keeps gRPC health in step with /readyz.
func followReadiness(ctx context.Context, kc *cache.Cache, staleReady bool, hs *health.Server) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_NOT_SERVING
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if ok, _ := readiness(kc, staleReady); ok {
			st = healthpb.HealthCheckResponse_SERVING
		}
		if st != last {
			for _, name := range []string{"", authzService} {
				hs.SetServingStatus(name, st)
			}
			last = st
		}
	}
}

func dbKind(url string) string {
	if len(url) >= 7 && url[:7] == "sqlite:" {
		return "sqlite"
	}
	return "postgres"
}

// registerStateMetrics exposes the cache's and limiter's state.
func registerStateMetrics(reg prometheus.Registerer, kc *cache.Cache, lim *limits.Limiter) error {
	counter := func(name, help string, f func(cache.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(kc.Stats())) })
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	overBudget := func(answer string, f func(cache.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_cache_miss_lookups_over_budget_total",
			Help: "Cache misses that found cache.miss_lookups_per_second spent, answered without a query: invalid_api_key " +
				"while the cache held every active key, unavailable (503) while it did not.",
			ConstLabels: prometheus.Labels{"answer": answer}}, func() float64 { return float64(f(kc.Stats())) })
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	cs := []prometheus.Collector{
		counter("keygate_cache_hits_total", "Key lookups answered from the cache.", func(s cache.Stats) uint64 { return s.Hits }),
		counter("keygate_cache_misses_total", "Key lookups that went to the key database.", func(s cache.Stats) uint64 { return s.Misses }),
		counter("keygate_cache_negative_hits_total", "Lookups of unknown keys answered from the cache.", func(s cache.Stats) uint64 { return s.NegativeHits }),
		counter("keygate_cache_stale_serves_total", "Cached keys served while the key database was unreachable.", func(s cache.Stats) uint64 { return s.StaleServes }),
		counter("keygate_database_errors_total", "Failed calls to the key database.", func(s cache.Stats) uint64 { return s.DBErrors }),
		gauge("keygate_database_up", "1 when the key database answered the last refresh.", func() float64 { return b(kc.DBUp()) }),
		gauge("keygate_cache_ready", "1 once the first cache load is done.", func() float64 { return b(kc.Ready()) }),
		gauge("keygate_cache_refresh_lag_seconds", "Seconds since the change feed was last read.", func() float64 {
			if t := kc.Stats().LastRefresh; !t.IsZero() {
				return time.Since(t).Seconds()
			}
			return 0
		}),
		// The budget of database look-ups for misses: keygate_cache_misses_total
		// is what it spent; these count the misses it had no look-up for.
		overBudget("invalid_api_key", func(s cache.Stats) uint64 { return s.OverBudgetUnknown }),
		overBudget("unavailable", func(s cache.Stats) uint64 { return s.OverBudgetUnavailable }),
		gauge("keygate_cache_complete", "1 while the cache holds every active key (a miss is then almost certainly an unknown key).",
			func() float64 { return b(kc.Complete()) }),
		counter("keygate_cache_evictions_total", "Records of active keys pushed out or refused for want of room (cache.max_keys); each makes the cache partial.",
			func(s cache.Stats) uint64 { return s.Evictions }),
		gauge("keygate_cache_negative_entries", "Unknown keys remembered (at most cache.negative_max, 40 bytes each).",
			func() float64 { return float64(kc.NegativeEntries()) }),
	}
	ls := func(f func(limits.Stats) float64) func() float64 { return func() float64 { return f(lim.Stats()) } }
	cs = append(cs,
		gauge("keygate_redis_up", "1 when Redis answers (0 when down or not configured).", ls(func(s limits.Stats) float64 { return b(s.RedisUp) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_redis_errors_total", Help: "Failed Redis calls of the rate limiter."},
			ls(func(s limits.Stats) float64 { return float64(s.RedisErrors) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "keygate_ratelimit_local_denials_total", Help: "Over-limit requests denied from the local deny cache, without a Redis call."},
			ls(func(s limits.Stats) float64 { return float64(s.LocalDenials) })),
	)
	bi := readBuildInfo()
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "keygate_build_info", Help: "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.Go}})
	info.Set(1)
	cs = append(cs, info)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
