package extauthz

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// A Check's span joins the trace of the request it decides: the W3C
// traceparent and tracestate headers of the CheckRequest (Envoy forwards
// the client's headers) or of the forward-auth request. Config.Tracer nil
// means no spans: the request readers then do not even look for those
// headers, and Check does no tracing work at all.

// Names of the check spans: the gRPC method, as gRPC instrumentation
// names it, and the HTTP endpoint.
var (
	checkSpanName = authv3.Authorization_Check_FullMethodName[1:]
	httpSpanName  = "authz " + HTTPPrefix
)

// Attributes of a check span; never the key or its hash.
const (
	attrCode      = attribute.Key("keygate.decision.code")
	attrKeyID     = attribute.Key("keygate.key.id")
	attrTenant    = attribute.Key("keygate.tenant")
	attrOrg       = attribute.Key("keygate.org")
	attrRoute     = attribute.Key("keygate.route")
	attrRequestID = attribute.Key("keygate.request_id")
	attrStatus    = attribute.Key("http.response.status_code")
)

// traceCarrier hands a request's trace headers to the propagator.
type traceCarrier struct{ parent, state string }

func (c *traceCarrier) Get(k string) string {
	switch k {
	case "traceparent":
		return c.parent
	case "tracestate":
		return c.state
	}
	return ""
}

func (c *traceCarrier) Set(string, string) {}
func (c *traceCarrier) Keys() []string     { return []string{"traceparent", "tracestate"} }

// spanOptions are those of every check span, built once: a span the
// sampler drops then costs no allocation for its options. The span starts
// when startSpan is called, as the request's decision does.
var spanOptions = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// startSpan starts the span of deciding r as a child of the caller's span
// when r carries a valid traceparent. The sampler (parent-based by
// default) follows the caller's sampled flag.
func (s *Server) startSpan(ctx context.Context, r *Request, name string) (context.Context, trace.Span) {
	if r.TraceParent != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, &traceCarrier{parent: r.TraceParent, state: r.TraceState})
	}
	return s.cfg.Tracer.Start(ctx, name, spanOptions...)
}

// endSpan notes the decision on a recorded span and ends it.
func endSpan(span trace.Span, d *Decision) {
	if span.IsRecording() {
		attrs := make([]attribute.KeyValue, 0, 7)
		attrs = append(attrs, attrCode.String(d.Code.String()), attrStatus.Int(d.Code.HTTPStatus()),
			attrRequestID.String(d.RequestID))
		if d.Route != "" {
			attrs = append(attrs, attrRoute.String(d.Route))
		}
		if d.HasKey {
			attrs = append(attrs, attrKeyID.String(d.Key.ID), attrTenant.String(d.Key.Tenant))
		}
		if d.Org != "" {
			attrs = append(attrs, attrOrg.String(d.Org))
		}
		span.SetAttributes(attrs...)
		if d.Code == CodeUnavailable {
			span.SetStatus(codes.Error, d.Code.String())
		}
	}
	span.End()
}
