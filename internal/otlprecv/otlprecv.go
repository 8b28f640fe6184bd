// Package otlprecv is an OTLP trace receiver on loopback, both OTLP/gRPC
// (the collector's TraceService) and OTLP/HTTP (POST /v1/traces,
// protobuf): tests send Keygate's spans to it to read them back, and the
// load harness to pay an exporter's real cost while discarding them.
package otlprecv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Config configures a Receiver.
type Config struct {
	// Discard counts the spans received without keeping them.
	Discard bool
}

// Span is one span received, with the service.name of its resource.
type Span struct {
	Service string
	*tracepb.Span
}

// Receiver is a running OTLP trace receiver.
type Receiver struct {
	collectorpb.UnimplementedTraceServiceServer
	cfg      Config
	grpcLis  net.Listener
	httpLis  net.Listener
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
	received atomic.Int64

	mu    sync.Mutex
	spans []Span
}

// Start listens on two loopback ports, one per protocol, and serves.
func Start(cfg Config) (*Receiver, error) {
	r := &Receiver{cfg: cfg}
	var err error
	if r.grpcLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("otlprecv: %w", err)
	}
	if r.httpLis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		r.grpcLis.Close()
		return nil, fmt.Errorf("otlprecv: %w", err)
	}
	r.grpcSrv = grpc.NewServer()
	collectorpb.RegisterTraceServiceServer(r.grpcSrv, r)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", r.serveHTTP)
	r.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go r.grpcSrv.Serve(r.grpcLis)
	go r.httpSrv.Serve(r.httpLis)
	return r, nil
}

// GRPCEndpoint is the OTLP/gRPC endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT
// takes it (with OTEL_EXPORTER_OTLP_INSECURE=true).
func (r *Receiver) GRPCEndpoint() string { return "http://" + r.grpcLis.Addr().String() }

// HTTPEndpoint is the OTLP/HTTP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT
// takes it: the exporter appends /v1/traces.
func (r *Receiver) HTTPEndpoint() string { return "http://" + r.httpLis.Addr().String() }

// Export takes one OTLP/gRPC request.
func (r *Receiver) Export(_ context.Context, req *collectorpb.ExportTraceServiceRequest) (*collectorpb.ExportTraceServiceResponse, error) {
	r.take(req)
	return &collectorpb.ExportTraceServiceResponse{}, nil
}

func (r *Receiver) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	if ct := hr.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "Content-Type must be application/x-protobuf, got "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, hr.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, "not an ExportTraceServiceRequest: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.take(&req)
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (r *Receiver) take(req *collectorpb.ExportTraceServiceRequest) {
	n := 0
	var kept []Span
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
			if r.cfg.Discard {
				continue
			}
			for _, sp := range ss.GetSpans() {
				kept = append(kept, Span{Service: service, Span: sp})
			}
		}
	}
	r.received.Add(int64(n))
	if len(kept) > 0 {
		r.mu.Lock()
		r.spans = append(r.spans, kept...)
		r.mu.Unlock()
	}
}

// Received counts the spans received, kept or not.
func (r *Receiver) Received() int64 { return r.received.Load() }

// Spans returns the spans kept so far.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Close stops both listeners.
func (r *Receiver) Close() error {
	r.grpcSrv.Stop()
	err := r.httpSrv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
