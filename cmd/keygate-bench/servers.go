package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	"github.com/keygate/keygate/config"
	kgserver "github.com/keygate/keygate/server"
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
	work      workload          // the keys' plan
	keys      *keyDB            // the seeded key database each server starts from a copy of
	env       map[string]string // set while the server starts (tracing)
	// pipelineWindow and pipelineLimit override the config's defaults
	// when set.
	pipelineWindow time.Duration
	pipelineLimit  int
}

// startKeygate runs Keygate as `keygate serve` does (server.New, Run)
// over a temporary SQLite database, a copy of o.keys, on loopback ports,
// and returns once it reports ready. Only what a benchmark must change is
// changed from the defaults: the database, the plan of the keys (far too
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

	dbFile, err := o.keys.copyTo(dir)
	if err != nil {
		return nil, err
	}
	cfg := o.work.config(dbFile)
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.Portal.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Redis.URL, cfg.Redis.KeyPrefix = o.redisURL, o.keyPrefix
	if o.pipelineWindow > 0 {
		cfg.Redis.PipelineWindow = o.pipelineWindow
	}
	if o.pipelineLimit > 0 {
		cfg.Redis.PipelineLimit = o.pipelineLimit
	}
	// Decisions are logged at info as in production, in JSON, to o.log
	// (io.Discard by default): the formatting cost stays, the terminal's
	// does not.
	log := kgserver.NewLogger(config.Log{Level: "info", Format: "json"}, o.log)

	if o.env != nil {
		defer setEnv(o.env)() // read by New, and by Run until Ready
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
		addr: grpcAddr.String(), keys: o.keys.keys, stop: cleanup,
		stats: func() serverStats {
			st := srv.Stats()
			return serverStats{RedisCalls: st.Limits.RedisCalls, RedisRoundTrips: st.Limits.RedisRoundTrips, RedisErrors: st.Limits.RedisErrors,
				CacheHits: st.Cache.Hits, CacheMisses: st.Cache.Misses}
		},
	}, nil
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
