// Package tracing sets up Keygate's OpenTelemetry traces from the standard
// OTEL_* environment: an OTLP exporter (gRPC or HTTP/protobuf), the
// sampler and the service's resource. Traces are off unless the
// environment names an exporter endpoint (or OTEL_TRACES_EXPORTER=otlp);
// off, there is no tracer at all, so that the Check path pays nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of Keygate's spans.
const Name = "github.com/keygate/keygate"

// Config is what New needs besides the environment.
type Config struct {
	// Version is the service.version of the resource.
	Version string
	// LookupEnv reads the environment; nil: os.LookupEnv. The exporters
	// read their own variables (OTEL_EXPORTER_OTLP_*) from the process
	// environment whatever it is: set it for tests with t.Setenv.
	LookupEnv func(string) (string, bool)
}

// Tracing is the process's tracer provider, or nothing when traces are
// off. The zero value and nil are off.
type Tracing struct {
	cfg      Config
	log      *slog.Logger
	on       bool
	sampler  sdktrace.Sampler
	protocol string
	tp       *sdktrace.TracerProvider // set by Start
}

// Protocols an OTLP exporter speaks (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// New reads and checks the environment: whether traces are on, the
// sampler, the protocol. Unsupported values are errors naming the
// variable. It starts nothing: Start does.
func New(cfg Config, log *slog.Logger) (*Tracing, error) {
	if log == nil {
		return nil, errors.New("tracing: a logger is required")
	}
	if cfg.LookupEnv == nil {
		cfg.LookupEnv = os.LookupEnv
	}
	get := func(k string) string { v, _ := cfg.LookupEnv(k); return strings.TrimSpace(v) }
	off := &Tracing{cfg: cfg, log: log}

	if v := get("OTEL_SDK_DISABLED"); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("OTEL_SDK_DISABLED: %q is not true or false", v)
		}
		if disabled {
			return off, nil
		}
	}
	switch exp := strings.ToLower(get("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return off, nil
	case "":
		if get("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return off, nil // nothing configured
		}
	case "otlp":
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not supported (otlp or none)", exp)
	}
	sampler, err := samplerOf(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))
	if err != nil {
		return nil, err
	}
	protocol, name := get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	if protocol == "" {
		protocol, name = get("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"
	}
	switch protocol {
	case "":
		protocol = ProtocolHTTP // the specification's default
	case ProtocolHTTP, ProtocolGRPC:
	default:
		return nil, fmt.Errorf("%s: %q is not supported (grpc or http/protobuf)", name, protocol)
	}
	return &Tracing{cfg: cfg, log: log, on: true, sampler: sampler, protocol: protocol}, nil
}

// Start builds the exporter and the tracer provider, when traces are on.
// The exporter reads its endpoint, headers, TLS and timeout settings
// (OTEL_EXPORTER_OTLP_*) itself and connects on its first batch.
func (t *Tracing) Start(ctx context.Context) error {
	if t == nil || !t.on || t.tp != nil {
		return nil
	}
	var exporter sdktrace.SpanExporter
	var err error
	if t.protocol == ProtocolGRPC {
		exporter, err = otlptracegrpc.New(ctx)
	} else {
		exporter, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return fmt.Errorf("tracing: the OTLP exporter: %w", err)
	}
	// Keygate's name and version, which OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES (read by WithFromEnv, later) override.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("keygate"), semconv.ServiceVersion(t.cfg.Version)),
		resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithHost())
	if err != nil {
		exporter.Shutdown(ctx)
		return fmt.Errorf("tracing: the resource (OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	// Exporting fails in the batcher's goroutine: said once per batch.
	log := t.log
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: exporting spans failed", slog.Any("error", err))
	}))
	t.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithSampler(t.sampler), sdktrace.WithResource(res))
	return nil
}

// samplerOf builds the sampler OTEL_TRACES_SAMPLER and its argument name,
// as the specification defines them; unset, parentbased_always_on. A
// parent-based sampler follows the caller's sampled flag (traceparent)
// and applies its root sampler only to requests that come without one.
func samplerOf(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.AlwaysSample(), nil
		}
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v < 0 || v > 1 {
			return nil, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio between 0 and 1", arg)
		}
		return sdktrace.TraceIDRatioBased(v), nil
	}
	switch strings.ToLower(name) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		root, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(root), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: %q is not supported (always_on, always_off, traceidratio, "+
		"parentbased_always_on, parentbased_always_off or parentbased_traceidratio)", name)
}

// Enabled reports whether the environment turns traces on.
func (t *Tracing) Enabled() bool { return t != nil && t.on }

// Protocol is the exporter's protocol, "" when off.
func (t *Tracing) Protocol() string {
	if !t.Enabled() {
		return ""
	}
	return t.protocol
}

// Tracer returns Keygate's tracer once started, nil when traces are off:
// the parts that trace check for nil and skip all work.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil || t.tp == nil {
		return nil
	}
	return t.tp.Tracer(Name)
}

// Shutdown exports the spans still queued and stops the exporter, within
// ctx. Start may be called again after it.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.tp == nil {
		return nil
	}
	tp := t.tp
	t.tp = nil
	if err := tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flushing spans: %w", err)
	}
	return nil
}

// Child starts a span under ctx's span, for the work a Check waits on (a
// database query, a Redis round trip), when tr is set and ctx's span is
// recorded; otherwise it does nothing and returns ctx and a nil span.
// The caller ends a non-nil span.
func Child(ctx context.Context, tr trace.Tracer, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if tr == nil || !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, nil
	}
	return tr.Start(ctx, name, opts...)
}

// End ends span, if any, noting err as its status.
func End(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
