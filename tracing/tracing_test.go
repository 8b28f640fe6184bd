package tracing

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestNew(t *testing.T) {
	const ep = "http://127.0.0.1:4318"
	tests := []struct {
		name     string
		env      map[string]string
		on       bool
		protocol string
		sampler  string // the sampler's description
		err      string // the error names this
	}{
		{name: "nothing set: off", env: map[string]string{}},
		{name: "sampler alone: off", env: map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}},
		{name: "endpoint: on, HTTP by default, parent-based always on", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep},
			on: true, protocol: ProtocolHTTP, sampler: "ParentBased{root:AlwaysOnSampler"},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ep + "/v1/traces"}, on: true, protocol: ProtocolHTTP},
		{name: "exporter otlp without endpoint: on, the SDK's default endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"},
			on: true, protocol: ProtocolHTTP},
		{name: "gRPC", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true, protocol: ProtocolGRPC},
		{name: "traces protocol wins", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, on: true, protocol: ProtocolHTTP},
		{name: "1%", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "0.01"}, on: true, protocol: ProtocolHTTP, sampler: "ParentBased{root:TraceIDRatioBased{0.01}"},
		{name: "ratio without parent", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "0.5"}, on: true, protocol: ProtocolHTTP, sampler: "TraceIDRatioBased{0.5}"},
		{name: "ratio without an argument: 1", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio"},
			on: true, protocol: ProtocolHTTP, sampler: "ParentBased{root:AlwaysOnSampler"},
		{name: "always off", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "always_off"},
			on: true, protocol: ProtocolHTTP, sampler: "AlwaysOffSampler"},
		{name: "SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_SDK_DISABLED": "true"}},
		{name: "SDK not disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_SDK_DISABLED": "false"}, on: true, protocol: ProtocolHTTP},
		{name: "exporter none", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_EXPORTER": "none"}},

		{name: "bad disabled", env: map[string]string{"OTEL_SDK_DISABLED": "maybe"}, err: "OTEL_SDK_DISABLED"},
		{name: "unknown exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, err: "OTEL_TRACES_EXPORTER"},
		{name: "unknown sampler", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "sometimes"}, err: "OTEL_TRACES_SAMPLER"},
		{name: "ratio over 1", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "2"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "ratio not a number", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "1%"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "negative ratio", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_TRACES_SAMPLER": "traceidratio",
			"OTEL_TRACES_SAMPLER_ARG": "-0.1"}, err: "OTEL_TRACES_SAMPLER_ARG"},
		{name: "JSON protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{name: "bad traces protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "udp"},
			err: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := New(Config{LookupEnv: envOf(tc.env)}, quiet)
			if tc.err != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.err+":") {
					t.Fatalf("error %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.Enabled() != tc.on || tr.Protocol() != tc.protocol {
				t.Fatalf("enabled %v protocol %q, want %v %q", tr.Enabled(), tr.Protocol(), tc.on, tc.protocol)
			}
			if tc.sampler != "" && !strings.HasPrefix(tr.sampler.Description(), tc.sampler) {
				t.Errorf("sampler %s, want %s…", tr.sampler.Description(), tc.sampler)
			}
			if tr.Tracer() != nil {
				t.Error("a tracer before Start")
			}
		})
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("New without a logger: no error")
	}
}

// TestOffStartsNothing: off, Start and Shutdown do nothing and there is
// no tracer, which is how the Check path knows to skip all tracing.
func TestOffStartsNothing(t *testing.T) {
	var nilTracing *Tracing
	for _, tr := range []*Tracing{nilTracing, {}} {
		if err := tr.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if tr.Enabled() || tr.Tracer() != nil {
			t.Fatal("off, but enabled or with a tracer")
		}
		if err := tr.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSamplingOnePercent: parentbased_traceidratio at 0.01 records about
// 1% of requests that come without a trace, and follows the caller's
// sampled flag for those that come with one.
func TestSamplingOnePercent(t *testing.T) {
	s, err := samplerOf("parentbased_traceidratio", "0.01")
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer(Name)
	const n = 20000
	sampled := 0
	for range n {
		_, sp := tr.Start(context.Background(), "check")
		if sp.IsRecording() {
			sampled++
		}
		sp.End()
	}
	// Expected 200; the bounds are over seven standard deviations wide.
	if sampled < 100 || sampled > 300 {
		t.Errorf("%d of %d roots sampled, want about 1%%", sampled, n)
	}
	for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: flags, Remote: true})
		ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)
		recorded := 0
		for range 100 {
			_, sp := tr.Start(ctx, "check")
			if sp.IsRecording() {
				recorded++
			}
			sp.End()
		}
		if want := map[bool]int{false: 0, true: 100}[flags.IsSampled()]; recorded != want {
			t.Errorf("caller's flags %s: %d of 100 recorded, want %d", flags, recorded, want)
		}
	}
}

func TestChild(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer(Name)
	if _, sp := Child(context.Background(), nil, "x"); sp != nil {
		t.Error("a child span without a tracer")
	}
	if _, sp := Child(context.Background(), tr, "x"); sp != nil {
		t.Error("a child span without a recorded parent")
	}
	ctx, parent := tr.Start(context.Background(), "check")
	_, sp := Child(ctx, tr, "x")
	if sp == nil || !sp.IsRecording() {
		t.Fatal("no child under a recorded parent")
	}
	End(sp, nil)
	End(nil, io.EOF) // nothing to end: no panic
	parent.End()
}
