package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/keys"
	kgserver "github.com/keygate/keygate/server"
)

// benchPlan is the plan of the benchmark key: far too large to deny anything.
const benchPlan = "bench"

// server is one system under test, listening on loopback.
type server struct {
	addr  string
	key   string // the API key to send ("" for the no-op server)
	stats func() serverStats
	stop  func()
}

// serverStats are counters a Keygate server exposes, read before and after
// the measured interval.
type serverStats struct {
	RedisCalls, RedisErrors uint64
	CacheHits, CacheMisses  uint64
}

// grpcServer builds a gRPC server with the options `keygate serve` uses
// (server.GRPCOptions: the codec, the stream workers, the bounds), for
// the no-op servers.
func grpcServer(opts ...grpc.ServerOption) (*grpc.Server, error) {
	kg, err := kgserver.GRPCOptions()
	if err != nil {
		return nil, err
	}
	return grpc.NewServer(append(kg, opts...)...), nil
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
}

// startKeygate runs Keygate as `keygate serve` does (server.New, Run)
// over a temporary SQLite database holding one key, on loopback ports,
// and returns once it reports ready. Only what a benchmark must change is
// changed from the defaults: the database, the plan of the key (far too
// large to deny anything) and the Redis settings.
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
	dir, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, func() { os.RemoveAll(dir) })

	cfg := config.Default()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Database.URL = "sqlite:" + filepath.Join(dir, "k.db")
	cfg.Database.Pepper = "keygate-bench-pepper"
	cfg.Plans[benchPlan] = []config.Window{{Limit: 1_000_000_000, Period: time.Hour}}
	cfg.Redis.URL, cfg.Redis.KeyPrefix = o.redisURL, o.keyPrefix
	// Decisions are logged at info as in production, in JSON, to o.log
	// (io.Discard by default): the formatting cost stays, the terminal's
	// does not.
	log := kgserver.NewLogger(config.Log{Level: "info", Format: "json"}, o.log)

	key, err := seedKey(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	srv, err := kgserver.New(cfg, log)
	if err != nil {
		return nil, err
	}
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	cleanups = append(cleanups, func() { stopRun(); <-done })
	select {
	case <-srv.Ready():
	case err := <-done:
		return nil, fmt.Errorf("keygate: %w", err)
	}
	grpcAddr, httpAddr := srv.Addrs()
	if err := waitReady(ctx, "http://"+httpAddr.String()+"/readyz", 30*time.Second); err != nil {
		return nil, err
	}
	return &server{
		addr: grpcAddr.String(), key: key, stop: cleanup,
		stats: func() serverStats {
			st := srv.Stats()
			return serverStats{RedisCalls: st.Limits.RedisCalls, RedisErrors: st.Limits.RedisErrors, CacheHits: st.Cache.Hits, CacheMisses: st.Cache.Misses}
		},
	}, nil
}

// seedKey creates the database and the benchmark's key through the same
// lifecycle service the CLI and the admin API use.
func seedKey(ctx context.Context, cfg config.Config, log *slog.Logger) (string, error) {
	db, err := kgserver.OpenDB(ctx, cfg, log, true)
	if err != nil {
		return "", err
	}
	defer db.Close()
	svc, err := kgserver.NewAdmin(cfg, db)
	if err != nil {
		return "", err
	}
	created, err := svc.Create(ctx, admin.CreateRequest{
		Tenant: "acme", Name: "bench", Env: keys.EnvLive, Scopes: []string{"patients:read"}, Plan: benchPlan,
	})
	if err != nil {
		return "", fmt.Errorf("creating the bench key: %w", err)
	}
	return created.Key, nil
}

// waitReady polls a /readyz URL until it answers 200, as an orchestrator
// would before sending traffic.
func waitReady(ctx context.Context, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("keygate not ready within %v", within)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// redisReachable pings the Redis at url.
func redisReachable(ctx context.Context, url string) error {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	opt.MaxRetries = -1 // one attempt: a refused connection answers at once
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}
