package extauthz

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

const (
	testTraceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
	testCallerSpan = "00f067aa0ba902b7"
	testParent     = "00-" + testTraceID + "-" + testCallerSpan + "-01"
)

// traced turns tracing on for s, as New does with Config.Tracer set.
func traced(s *Server, tr trace.Tracer) {
	s.cfg.Tracer = tr
	s.names.trace = true
}

// TestTraceHeadersRead: the trace headers are read, in each form a
// CheckRequest carries headers and by both readers, only with tracing on.
func TestTraceHeadersRead(t *testing.T) {
	mapForm := benchReq("Bearer x", "traceparent", testParent, "tracestate", "acme=1")
	listForm := rawForm(map[string]string{"authorization": "Bearer x", "TraceParent": testParent, "tracestate": "acme=1"})
	for _, on := range []bool{false, true} {
		s, _ := benchServer(t)
		if on {
			traced(s, sdktrace.NewTracerProvider().Tracer("test"))
		}
		for name, req := range map[string]*authv3.CheckRequest{"headers": mapForm, "header_map": listForm} {
			b, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			w := &wireCheck{names: &s.names}
			if err := w.decode(b); err != nil {
				t.Fatal(err)
			}
			for reader, r := range map[string]Request{"wire": w.request(), "fromCheck": s.names.fromCheck(req)} {
				want := Request{}
				if on {
					want = Request{TraceParent: testParent, TraceState: "acme=1"}
				}
				if r.TraceParent != want.TraceParent || r.TraceState != want.TraceState {
					t.Errorf("tracing %v, %s, %s: traceparent %q tracestate %q, want %q %q", on, name, reader,
						r.TraceParent, r.TraceState, want.TraceParent, want.TraceState)
				}
			}
		}
	}
}

func rawForm(h map[string]string) *authv3.CheckRequest {
	var hs []*corev3.HeaderValue
	for k, v := range h {
		hs = append(hs, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/v1/patients/p1", HeaderMap: &corev3.HeaderMap{Headers: hs}}}}}
}

// TestCheckSpan: a Check with a sampled traceparent records a server span
// under the caller's, with the decision and the key's id and tenant; one
// whose caller did not sample, none.
func TestCheckSpan(t *testing.T) {
	s, k := benchServer(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	traced(s, tp.Tracer("test"))

	checkForWire(context.Background(), s, benchReq("Bearer "+k.allowed, "traceparent", testParent, "tracestate", "acme=1"))
	checkForWire(context.Background(), s, benchReq("Bearer "+k.revoked, "traceparent", "00-"+testTraceID+"-"+testCallerSpan+"-00"))
	checkForWire(context.Background(), s, benchReq("Bearer "+k.down, "traceparent", testParent))
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2 (the unsampled caller's check records none)", len(spans))
	}
	for i, want := range []struct {
		code   string
		status string
		key    bool
	}{{"ok", "200", true}, {"unavailable", "503", false}} {
		sp := spans[i]
		if sp.Parent().TraceID().String() != testTraceID || sp.Parent().SpanID().String() != testCallerSpan || !sp.Parent().IsRemote() {
			t.Errorf("span %d: parent %v, want the caller's span", i, sp.Parent())
		}
		if sp.SpanContext().TraceID().String() != testTraceID || sp.SpanKind() != trace.SpanKindServer || sp.Name() != checkSpanName {
			t.Errorf("span %d: %s %v in trace %s", i, sp.Name(), sp.SpanKind(), sp.SpanContext().TraceID())
		}
		attrs := map[attribute.Key]string{}
		for _, a := range sp.Attributes() {
			attrs[a.Key] = a.Value.String()
		}
		if attrs[attrCode] != want.code || attrs[attrStatus] != want.status || (attrs[attrKeyID] != "") != want.key {
			t.Errorf("span %d attributes %v, want code %s status %s", i, attrs, want.code, want.status)
		}
		if want.key && (attrs[attrKeyID] != "key_0" || attrs[attrTenant] != "acme") {
			t.Errorf("span %d attributes %v: want the key's id and tenant", i, attrs)
		}
		if (sp.Status().Code.String() == "Error") != (want.code == "unavailable") {
			t.Errorf("span %d status %v", i, sp.Status())
		}
	}
	if ts := spans[0].SpanContext().TraceState().String(); ts != "acme=1" {
		t.Errorf("tracestate %q, want the caller's", ts)
	}
}

// BenchmarkCheckTraced is BenchmarkCheck/allowed with tracing on, the SDK
// batching spans to an exporter that drops them: at 1% of requests
// without a trace, with a caller that sampled, and with one that did not.
func BenchmarkCheckTraced(b *testing.B) {
	s, k := benchServer(b)
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))))
	defer tp.Shutdown(context.Background())
	traced(s, tp.Tracer("bench"))
	for _, c := range []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"ratio_1%", benchReq("Bearer " + k.allowed)},
		{"caller_sampled", benchReq("Bearer "+k.allowed, "traceparent", testParent)},
		{"caller_not_sampled", benchReq("Bearer "+k.allowed, "traceparent", "00-"+testTraceID+"-"+testCallerSpan+"-00")},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if resp := checkForWire(ctx, s, c.req); resp.GetOkResponse() == nil {
					b.Fatalf("not allowed: %v", resp.GetStatus())
				}
			}
		})
	}
}
