package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/mem"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/usage"
)

// server is one system under test, listening on loopback.
type server struct {
	addr  string
	keys  []string // the API keys to send (none for the no-op servers)
	stats func() serverStats
	stop  func()
}

// serverStats are counters a Keygate server exposes, read before and after
// the measured interval.
type serverStats struct {
	RedisCalls, RedisRoundTrips, RedisErrors uint64
	CacheHits, CacheMisses                   uint64
}

// grpcServer builds a gRPC server with the options `keygate serve` uses
// (extauthz.ServerOptions: the response encoder, the stream workers), for
// the no-op servers as for Keygate.
func grpcServer(opts ...grpc.ServerOption) (*grpc.Server, error) {
	kg, err := extauthz.ServerOptions()
	if err != nil {
		return nil, err
	}
	return grpc.NewServer(append(append(kg,
		grpc.MaxRecvMsgSize(1<<20),
		grpc.MaxConcurrentStreams(1024),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	), opts...)...), nil
}

func listen(gs *grpc.Server) (string, func(), error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() { _ = gs.Serve(lis); close(done) }()
	return lis.Addr().String(), func() { gs.Stop(); <-done }, nil
}

// noopAuthz is the physical limit: it answers OK at once.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (n *noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return n.resp, nil
}

func startNoop() (*server, error) {
	gs, err := grpcServer()
	if err != nil {
		return nil, err
	}
	authv3.RegisterAuthorizationServer(gs, &noopAuthz{resp: &authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}})
	addr, stop, err := listen(gs)
	if err != nil {
		return nil, err
	}
	return &server{addr: addr, stop: stop, stats: func() serverStats { return serverStats{} }}, nil
}

// startNoopRaw starts a server below the no-op: gRPC with a handler that
// neither decodes the request nor encodes a response (it sends the bytes
// of an OK response written once). What Keygate costs above it is all of
// Keygate, request decoding included; what the no-op costs above it is
// protobuf-go's decoding of the CheckRequest.
func startNoopRaw() (*server, error) {
	ok, err := encodeRequest(&authv3.CheckResponse{
		Status:       &rpcstatus.Status{},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	})
	if err != nil {
		return nil, err
	}
	// The last codec option given wins: this one replaces Keygate's.
	gs, err := grpcServer(grpc.ForceServerCodecV2(rawServerCodec{}))
	if err != nil {
		return nil, err
	}
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Check", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(undecoded{}); err != nil {
				return nil, err
			}
			return ok, nil
		}}},
		Metadata: authv3.Authorization_ServiceDesc.Metadata,
	}, struct{}{})
	addr, stop, err := listen(gs)
	if err != nil {
		return nil, err
	}
	return &server{addr: addr, stop: stop, stats: func() serverStats { return serverStats{} }}, nil
}

// undecoded is a request left as bytes, unread.
type undecoded struct{}

// rawServerCodec takes undecoded requests and sends rawMessage responses.
type rawServerCodec struct{}

func (rawServerCodec) Name() string { return "proto" }

func (rawServerCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(rawMessage)
	if !ok {
		return nil, fmt.Errorf("raw no-op: cannot encode %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(r)}, nil
}

func (rawServerCodec) Unmarshal(_ mem.BufferSlice, v any) error {
	if _, ok := v.(undecoded); !ok {
		return fmt.Errorf("raw no-op: cannot decode into %T", v)
	}
	return nil
}

// keygateOpts says how to build one Keygate under test.
type keygateOpts struct {
	redisURL  string // "" for in-process limits
	keyPrefix string // Redis key prefix, unique per run
	log       io.Writer
	work      workload // the plan
	keys      *keyDB   // the seeded key database to start from
	pipeline  pipelineOpts
}

// pipelineOpts tune how Redis commands are pipelined (zero: the defaults).
type pipelineOpts struct {
	window time.Duration
	limit  int
}

// startKeygate wires Keygate as `keygate serve` does (store → cache →
// limits → usage → extauthz → gRPC) with a temporary SQLite database, a
// copy of o.keys, and returns once the cache is warm.
func startKeygate(ctx context.Context, o keygateOpts) (_ *server, err error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	cfg := config.Default()
	// Decisions are logged at info as in production, in JSON, to o.log
	// (io.Discard by default): the formatting cost stays, the terminal's
	// does not.
	log := slog.New(slog.NewJSONHandler(o.log, &slog.HandlerOptions{Level: slog.LevelInfo}))

	dir, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })
	dbFile, err := o.keys.copyTo(dir)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, "sqlite:"+dbFile, store.Options{
		MaxConns: cfg.Database.MaxConns, QueryTimeout: cfg.Database.Timeout,
		ConnectTimeout: cfg.Database.ConnectTimeout, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the key database: %w", err)
	}
	cleanups = append(cleanups, func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("migrating the key database: %w", err)
	}

	formats, hasher, err := benchKeys(cfg)
	if err != nil {
		return nil, err
	}

	pol, err := policyFor(cfg)
	if err != nil {
		return nil, err
	}
	lim, err := limits.New(limits.Config{
		Plans:    o.work.plans(),
		RedisURL: o.redisURL, KeyPrefix: o.keyPrefix,
		OnRedisError: limits.Mode(cfg.Limits.OnRedisError), Timeout: cfg.Redis.Timeout,
		PipelineWindow: o.pipeline.window, PipelineLimit: o.pipeline.limit,
	}, log)
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	cleanups = append(cleanups, func() { lim.Close() })
	kc, err := cache.New(cache.Config{
		MaxKeys: cfg.Cache.MaxKeys, NegativeTTL: cfg.Cache.NegativeTTL, PollInterval: cfg.Database.PollInterval,
		QueryTimeout: cfg.Database.Timeout, WarmStart: true,
	}, db, log)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, kc.Close)
	rec, err := usage.New(usage.Config{FlushInterval: cfg.Database.LastUsedFlush, Timeout: cfg.Database.Timeout}, db, log)
	if err != nil {
		return nil, err
	}
	metrics, err := extauthz.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	srv, err := extauthz.New(extauthz.Config{
		Formats: formats, Hasher: hasher, Policy: pol,
		Headers: extauthz.HeaderNames{
			Auth: cfg.Auth.Header, Org: cfg.Organization.Header,
			KeyID: cfg.Headers.KeyID, Tenant: cfg.Headers.Tenant, OrgOut: cfg.Headers.Org,
			Env: cfg.Headers.Env, Scopes: cfg.Headers.Scopes, Plan: cfg.Headers.Plan,
		},
		Realm: cfg.Auth.Realm,
	}, kc, lim, rec, metrics, log)
	if err != nil {
		return nil, err
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	bgDone := make(chan struct{}, 3)
	for _, run := range []func(context.Context) error{kc.Run, rec.Run, lim.Run} {
		go func() { _ = run(bg); bgDone <- struct{}{} }()
	}
	cleanups = append(cleanups, func() {
		stopBG()
		for range 3 {
			<-bgDone
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !kc.Ready() {
		if time.Now().After(deadline) {
			return nil, errors.New("the key cache did not become ready in 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}

	gs, err := grpcServer()
	if err != nil {
		return nil, err
	}
	srv.Register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	addr, stop, err := listen(gs)
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, stop)
	return &server{
		addr: addr, keys: o.keys.keys, stop: cleanup,
		stats: func() serverStats {
			ls, cs := lim.Stats(), kc.Stats()
			return serverStats{RedisCalls: ls.RedisCalls, RedisRoundTrips: ls.RedisRoundTrips, RedisErrors: ls.RedisErrors,
				CacheHits: cs.Hits, CacheMisses: cs.Misses}
		},
	}, nil
}
