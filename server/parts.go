package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/certs"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/usage"
)

// authzService is the name Envoy's gRPC health checks may ask about.
const authzService = "envoy.service.auth.v3.Authorization"

// parts are the collaborators of one running server.
type parts struct {
	cache    *cache.Cache
	limiter  *limits.Limiter
	usage    *usage.Recorder
	failures *limits.Failures // nil: failed authentications are not limited
	authz    *extauthz.Server
	events   *events.Publisher
	registry *prometheus.Registry
}

func (p *parts) close() {
	if p.failures != nil {
		p.failures.Close()
	}
	if p.cache != nil {
		p.cache.Close()
	}
	if p.limiter != nil {
		p.limiter.Close()
	}
}

// build wires store → cache → limits → usage → extauthz over db.
func (s *Server) build(db store.DB) (_ *parts, err error) {
	cfg, log := s.cfg, s.log
	p := &parts{}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	if p.limiter, err = limits.New(cfg.Limiter(), log); err != nil {
		return nil, err
	}
	if cfg.Redis.URL == "" {
		log.Warn("no redis.url configured: rate limits are kept in this process only, correct for a single replica")
	}
	p.cache, err = cache.New(cache.Config{
		MaxKeys: cfg.Cache.MaxKeys, NegativeTTL: cfg.Cache.NegativeTTL, PollInterval: cfg.Database.PollInterval,
		QueryTimeout: cfg.Database.Timeout, WarmStart: cfg.Cache.WarmStart,
		NegativeMax: cfg.Cache.NegativeMax, MissLookups: cfg.Cache.MissLookupsPerSecond,
	}, db, log)
	if err != nil {
		return nil, err
	}
	p.usage, err = usage.New(usage.Config{FlushInterval: cfg.Usage.FlushInterval, LastUsedInterval: cfg.Database.LastUsedFlush,
		Timeout: cfg.Database.Timeout}, db, log)
	if err != nil {
		return nil, err
	}
	p.registry = prometheus.NewRegistry()
	p.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := extauthz.NewMetrics(p.registry)
	if err != nil {
		return nil, err
	}
	if err := registerStateMetrics(p.registry, p.cache, p.limiter); err != nil {
		return nil, err
	}
	if err := registerUsageMetrics(p.registry, p.usage); err != nil {
		return nil, err
	}
	if p.events, err = events.New(s.events, db, log.With(slog.String("component", "webhooks"))); err != nil {
		return nil, err
	}
	if err := registerEventsMetrics(p.registry, p.events); err != nil {
		return nil, err
	}
	if w := cfg.Auth.Failures; w.Limit > 0 {
		if p.failures, err = limits.NewFailures(limits.Window{Limit: w.Limit, Period: w.Period}, nil); err != nil {
			return nil, err
		}
	}
	ef := cfg.ErrorFormat()
	ecfg := extauthz.Config{
		Formats: s.formats, Hasher: s.hasher, Policy: s.policy,
		Headers: cfg.HeaderNames(), Realm: cfg.Auth.Realm, Errors: &ef, TrustedHops: cfg.Auth.TrustedHops,
		RateLimited: p.events,
	}
	if p.failures != nil { // a nil *Failures must not become a non-nil interface
		ecfg.Failures = p.failures
	}
	if p.authz, err = extauthz.New(ecfg, p.cache, p.limiter, p.usage, metrics, log); err != nil {
		return nil, err
	}
	return p, nil
}

// GRPCOptions are the gRPC server options of every Keygate listener, and
// of the harness's no-op servers so that they are measured alike:
// extauthz's codec and stream workers, message and stream bounds,
// keepalive rules.
func GRPCOptions() ([]grpc.ServerOption, error) {
	opts, err := extauthz.ServerOptions()
	if err != nil {
		return nil, err
	}
	return append(opts,
		grpc.MaxRecvMsgSize(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.MaxConcurrentStreams(1024),
	), nil
}

func (s *Server) grpcServer(p *parts) (*grpc.Server, error) {
	opts, err := GRPCOptions()
	if err != nil {
		return nil, err
	}
	if t := s.cfg.TLS; t.CertFile != "" {
		rl, err := certs.New(certs.Config{CertFile: t.CertFile, KeyFile: t.KeyFile,
			ClientCAFile: t.ClientCAFile, RequireClientCert: t.RequireClientCert})
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(rl.TLSConfig())))
	}
	gs := grpc.NewServer(opts...)
	p.authz.Register(gs)
	reflection.Register(gs)
	return gs, nil
}

// OpenDB opens the configured key database. create says whether a
// missing SQLite file may be created (serve and migrate); every other
// command refuses, saying where it looked. The schema is brought up to
// date (migrations are safe to run from several processes at once).
func OpenDB(ctx context.Context, cfg config.Config, log *slog.Logger, create bool) (store.DB, error) {
	db, err := store.Open(ctx, cfg.Database.URL, store.Options{
		MaxConns: cfg.Database.MaxConns, QueryTimeout: cfg.Database.Timeout,
		ConnectTimeout: cfg.Database.ConnectTimeout, Logger: log, MustExist: !create,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the key database: %w", err)
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrating the key database: %w", err)
	}
	return db, nil
}
