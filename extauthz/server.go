package extauthz

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

var _ authv3.AuthorizationServer = (*grpcServer)(nil)

// grpcServer adapts Server to the generated gRPC interface.
type grpcServer struct {
	authv3.UnimplementedAuthorizationServer
	s *Server
}

// ServerOptions are the gRPC server options Keygate's Check path is built
// for: its codec (CodecOption) and a pool of stream workers. Without the
// pool, gRPC runs every stream on a new goroutine, whose stack starts
// small and is grown — copied — on every request once the decision runs
// deep (hashing, the log line): 8% of the CPU of a loaded server on this
// project's machine (gRPC's own notes: golang/go#18138). Workers keep
// their grown stacks; when all are busy gRPC falls back to a goroutine.
func ServerOptions() ([]grpc.ServerOption, error) {
	codec, err := CodecOption()
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{codec, grpc.NumStreamWorkers(uint32(streamWorkersPerCPU * runtime.GOMAXPROCS(0)))}, nil
}

// streamWorkersPerCPU sizes the worker pool: enough for the checks in
// flight while some wait on Redis, at a few KiB of stack each.
const streamWorkersPerCPU = 64

// Register serves s as envoy.service.auth.v3.Authorization on g. Built
// with CodecOption, g hands Check the request as read from the wire
// (wire.go); with any other codec, decoded in full.
func (s *Server) Register(g *grpc.Server) {
	g.RegisterService(&serviceDesc, &grpcServer{s: s})
}

// Check is the ext_authz entry point. Every outcome, denials included, is
// a CheckResponse; it returns an error only if the context is done.
func (g *grpcServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return g.s.Check(ctx, req)
}

// Check decides one CheckRequest.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	r := s.names.fromCheck(req)
	return s.check(ctx, &r, start, false).(*authv3.CheckResponse), nil
}

// check decides r, which arrived at start, and logs the decision. The
// answer is for Keygate's codec (toWire) when forWire is set, else a
// CheckResponse message on its own.
func (s *Server) check(ctx context.Context, r *Request, start time.Time, forWire bool) any {
	var span trace.Span
	if s.cfg.Tracer != nil {
		ctx, span = s.startSpan(ctx, r, checkSpanName)
	}
	d := s.decideAt(ctx, r, start)
	var resp any
	if forWire {
		resp = s.toWire(&d)
	} else {
		resp = s.toCheckResponse(&d)
	}
	s.finish(ctx, r, &d, start)
	if span != nil {
		endSpan(span, &d)
	}
	return resp
}

// finish counts and logs one decision: one line, never the key.
func (s *Server) finish(ctx context.Context, r *Request, d *Decision, start time.Time) {
	end := time.Now()
	elapsed := end.Sub(start)
	s.metrics.observe(d.Code, elapsed.Seconds())
	level := slog.LevelInfo
	if d.Code == CodeUnavailable {
		level = slog.LevelWarn
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	decision := "deny"
	switch d.Code {
	case CodeOK:
		decision = "allow"
	case CodeIntrospection:
		decision = "answer"
	}
	// Record built by hand with no caller: LogAttrs would walk the stack
	// (runtime.Callers) on every Check for a source we never print.
	rec := slog.NewRecord(end, level, "decision", 0)
	// All attributes in one call: the record grows its overflow slice once.
	var buf [12]slog.Attr
	attrs := append(buf[:0],
		slog.String("decision", decision),
		slog.String("code", d.Code.String()),
		slog.String("request_id", d.RequestID),
		slog.String("method", r.Method),
		slog.String("path", truncate(r.Path, 256)),
		slog.String("route", d.Route),
		slog.Duration("latency", elapsed),
	)
	if d.HasKey {
		attrs = append(attrs, slog.String("key_id", d.Key.ID), slog.String("key_prefix", d.Key.Prefix), slog.String("tenant", d.Key.Tenant))
	}
	if d.Org != "" {
		attrs = append(attrs, slog.String("org", d.Org))
	}
	if s.cfg.Tracer != nil {
		// The line names its trace, when one was recorded.
		if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
			attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
		}
	}
	rec.AddAttrs(attrs...)
	if err := s.log.Handler().Handle(ctx, rec); err != nil {
		s.metrics.logError()
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
