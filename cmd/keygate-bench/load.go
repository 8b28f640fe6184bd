package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/policy"
)

// loadOpts is the load every server gets.
type loadOpts struct {
	concurrency int
	conns       int
	duration    time.Duration
	warmup      time.Duration
	rate        float64 // checks/s, open loop; 0: closed loop, as fast as possible
	decode      string  // decodeStatus or decodeFull
	rounds      int     // runs of each server, interleaved
	work        workload
}

// How the client encodes requests and reads responses (see wire.go).
const (
	decodeStatus = "status" // requests encoded once, of responses only the codes read
	decodeFull   = "full"   // protobuf-go both ways, every call
)

// measured is what one load run saw over its measured interval.
type measured struct {
	checks   uint64 // completed with an OK response
	notOK    uint64 // completed with a denial
	errors   uint64 // gRPC errors
	elapsed  time.Duration
	cpu      time.Duration // user+sys of the whole process
	redisCPU time.Duration // user+sys of the Redis server
	stats    serverStats   // the server's counters' growth
	mallocs  uint64        // heap allocations of the whole process
	lat      hist
	firstErr error
	// scheduled is, at a fixed rate, how many checks the schedule called
	// for from the start of the warmup to the end of the measured
	// interval: no more can have been measured.
	scheduled uint64
}

// checkRequest is the CheckRequest Envoy's ext_authz filter sends for
// GET /api/v1/patients/p1 with a bearer key (the fields cmd/keygate's
// buildCheckRequest fills), with the route's scope in context_extensions.
func checkRequest(key string, n int) *authv3.CheckRequest {
	id := fmt.Sprintf("bench-%d", n)
	const path = "/api/v1/patients/p1"
	h := map[string]string{
		":method": "GET", ":path": path, ":authority": "api.example.com", ":scheme": "http",
		"x-request-id": id, "user-agent": "keygate-bench", "accept": "*/*", "x-forwarded-proto": "http",
	}
	if key != "" {
		h["authorization"] = "Bearer " + key
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: id, Method: "GET", Path: path, Host: "api.example.com", Scheme: "http", Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: map[string]string{policy.ExtScopes: "patients:read"},
	}}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// requestSet is one CheckRequest per key, built (and in -decode status
// encoded) once and shared read-only by the workers.
type requestSet struct {
	msgs []*authv3.CheckRequest
	raw  []rawMessage
}

// newRequests builds the requests for keys; none means one request
// without a key (the no-op servers).
func newRequests(keys []string, decode string) (requestSet, error) {
	if len(keys) == 0 {
		keys = []string{""}
	}
	var rs requestSet
	for i, k := range keys {
		req := checkRequest(k, i)
		rs.msgs = append(rs.msgs, req)
		if decode == decodeStatus {
			raw, err := encodeRequest(req)
			if err != nil {
				return rs, err
			}
			rs.raw = append(rs.raw, raw)
		}
	}
	return rs, nil
}

// probes are read at both ends of the measured interval.
type probes struct {
	// onMeasure runs as the interval starts, and what it returns as the
	// interval ends (profiling).
	onMeasure func() func()
	redisCPU  func() (time.Duration, error) // the Redis server's CPU time
	stats     func() serverStats            // the server's counters
}

// drive sends the load to addr: a warmup, then the measured interval. Each
// check carries one of keys, picked by the workload. Each probe that is
// set is read at both ends of the measured interval.
func drive(ctx context.Context, addr string, keys []string, o loadOpts, p probes) (*measured, error) {
	reqs, err := newRequests(keys, o.decode)
	if err != nil {
		return nil, err
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if o.decode == decodeStatus {
		codec, err := newClientCodec()
		if err != nil {
			return nil, err
		}
		dial = append(dial, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(codec)))
	}
	conns := make([]*grpc.ClientConn, o.conns)
	for i := range conns {
		cc, err := grpc.NewClient(addr, dial...)
		if err != nil {
			return nil, err
		}
		defer cc.Close()
		c := authv3.NewAuthorizationClient(cc)
		// Connect each client, and check the server allows the request.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := c.Check(cctx, reqs.msgs[0])
		cancel()
		if err != nil {
			return nil, fmt.Errorf("first check: %w", err)
		}
		if resp.GetOkResponse() == nil {
			return nil, fmt.Errorf("first check was denied: %d %s", resp.GetDeniedResponse().GetStatus().GetCode(), resp.GetStatus().GetMessage())
		}
		conns[i] = cc
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var phase atomic.Int32
	type workerResult struct {
		lat             hist
		ok, notOK, errs uint64
		firstErr        error
	}
	results := make([]*workerResult, o.concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.concurrency {
		res := &workerResult{}
		results[w] = res
		send := sender(conns[w%len(conns)], reqs, o.decode)
		pick := o.work.picker(w)
		if len(keys) <= 1 {
			pick = func() int { return 0 }
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker has its own context: the per-call context gRPC
			// derives from it then registers with an uncontended parent
			// (a shared one is a mutex all workers fight over).
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			// In fixed-rate mode, worker w sends checks number w, w+C,
			// w+2C, … of a schedule at o.rate checks/s, and latency runs
			// from the scheduled send time: a stalled server delays later
			// sends, and that wait is counted (no coordinated omission).
			var interval time.Duration
			var next time.Time
			if o.rate > 0 {
				interval = time.Duration(float64(o.concurrency) * float64(time.Second) / o.rate)
				next = start.Add(time.Duration(float64(w) * float64(time.Second) / o.rate))
			}
			for {
				var t0 time.Time
				if o.rate > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
					t0 = next
					next = next.Add(interval)
				} else {
					t0 = time.Now()
				}
				if phase.Load() == phaseStop {
					return
				}
				allowed, err := send(ctx, pick())
				lat := time.Since(t0)
				switch phase.Load() {
				case phaseStop:
					return
				case phaseWarmup:
					continue
				}
				switch {
				case err != nil:
					res.errs++
					if res.firstErr == nil {
						res.firstErr = err
					}
				case !allowed:
					res.notOK++
				default:
					res.ok++
				}
				res.lat.record(lat)
			}
		}()
	}

	sleep := func(d time.Duration) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := sleep(o.warmup); err != nil {
		return nil, err
	}
	var after func()
	if p.onMeasure != nil {
		after = p.onMeasure()
	}
	var r0, r1 time.Duration
	if p.redisCPU != nil {
		if r0, err = p.redisCPU(); err != nil {
			return nil, fmt.Errorf("reading Redis's CPU time: %w", err)
		}
	}
	var s0, s1 serverStats
	if p.stats != nil {
		s0 = p.stats()
	}
	m0, c0 := mallocs(), cpuTime()
	t0 := time.Now()
	phase.Store(phaseMeasure)
	err = sleep(o.duration)
	phase.Store(phaseStop)
	end := time.Now()
	elapsed := end.Sub(t0)
	c1, m1 := cpuTime(), mallocs()
	if p.stats != nil {
		s1 = p.stats()
	}
	if p.redisCPU != nil && err == nil {
		if r1, err = p.redisCPU(); err != nil {
			return nil, fmt.Errorf("reading Redis's CPU time: %w", err)
		}
	}
	if after != nil {
		after()
	}
	cancel()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	m := &measured{elapsed: elapsed, cpu: c1 - c0, redisCPU: r1 - r0, mallocs: m1 - m0, stats: serverStats{
		RedisCalls: s1.RedisCalls - s0.RedisCalls, RedisRoundTrips: s1.RedisRoundTrips - s0.RedisRoundTrips,
		RedisErrors: s1.RedisErrors - s0.RedisErrors, CacheHits: s1.CacheHits - s0.CacheHits, CacheMisses: s1.CacheMisses - s0.CacheMisses,
	}}
	if o.rate > 0 {
		// Check k (from 0) is due at start + k/rate.
		m.scheduled = uint64(o.rate*end.Sub(start).Seconds()) + 1
	}
	for _, r := range results {
		m.lat.merge(&r.lat)
		m.checks += r.ok
		m.notOK += r.notOK
		m.errors += r.errs
		if m.firstErr == nil {
			m.firstErr = r.firstErr
		}
	}
	return m, nil
}

// sender returns a worker's way of sending request i of reqs on cc and
// telling whether it was allowed, in the decode mode asked for.
func sender(cc *grpc.ClientConn, reqs requestSet, decode string) func(context.Context, int) (bool, error) {
	if decode == decodeFull {
		client := authv3.NewAuthorizationClient(cc)
		return func(ctx context.Context, i int) (bool, error) {
			resp, err := client.Check(ctx, reqs.msgs[i])
			return resp.GetOkResponse() != nil, err
		}
	}
	var ans answer
	return func(ctx context.Context, i int) (bool, error) {
		err := cc.Invoke(ctx, authv3.Authorization_Check_FullMethodName, reqs.raw[i], &ans)
		return ans.allowed && ans.grpcCode == 0, err
	}
}
