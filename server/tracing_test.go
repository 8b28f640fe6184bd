package server

import (
	"encoding/hex"
	"fmt"
	"github.com/keygate/keygate/internal/testrun"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/otlprecv"
	"github.com/keygate/keygate/internal/testredis"
	"github.com/keygate/keygate/keys"
)

// TestTracesJoinTheCallersTrace runs a server with traces on, exporting
// to an OTLP receiver of the test's own over each protocol, and sends
// Checks over real gRPC, and a forward-auth request, carrying a W3C
// traceparent. Keygate's span must be in the caller's trace, a child of
// the caller's span, with the key's id and tenant and the decision, and
// with children for the key database lookup (the key is not cached: no
// warm start) and the Redis call. The root sampler is a ratio of 0, so
// that only the caller's sampled flag can record a span: requests without
// a traceparent, or with one not sampled, leave none.
func TestTracesJoinTheCallersTrace(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Redis: -short leaves out the tests that need services; make test runs them")
	}
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(protocol, func(t *testing.T) {
			recv, err := otlprecv.Start(otlprecv.Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer recv.Close()
			endpoint := recv.HTTPEndpoint()
			if protocol == "grpc" {
				endpoint = recv.GRPCEndpoint()
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
			t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0")
			t.Setenv("OTEL_SERVICE_NAME", "keygate-under-test")
			checkTraces(t, recv)
		})
	}
}

func checkTraces(t *testing.T, recv *otlprecv.Receiver) {
	dbPath := filepath.Join(t.TempDir(), "keygate.db")
	cfg := config.Default()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Database.URL = "sqlite:" + dbPath
	cfg.Cache.WarmStart = false // the Check's lookup must go to the database
	cfg.Redis.URL = testredis.SharedURL()
	cfg.Redis.KeyPrefix = fmt.Sprintf("keygate-test-traces-%d:", time.Now().UnixNano())
	cfg.DefaultRoute = &config.Route{Scopes: []string{}}

	// The key, in the database before the server starts.
	key, err := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	hash := keys.NewHasher([]byte(cfg.Database.Pepper)).Sum(key)
	db, err := OpenDB(t.Context(), cfg, slog.New(slog.DiscardHandler), true)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := keys.NewID("key")
	if _, err := db.InsertKey(t.Context(), keys.Record{ID: id, Hash: hash, Prefix: key[:15], Tenant: "acme", Env: keys.EnvLive,
		Lineage: id, CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	srv, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	stop := testrun.Start(t, srv, 30*time.Second)
	ga, ha := srv.Addrs()

	conn, err := grpc.NewClient(ga.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(headers map[string]string) {
		t.Helper()
		resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/v1/things", Headers: headers}},
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if c := resp.GetStatus().GetCode(); c != 0 {
			t.Fatalf("Check denied (code %d): %v", c, resp)
		}
	}
	const (
		traceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
		callerSpan = "00f067aa0ba902b7"
		httpTrace  = "0af7651916cd43dd8448eb211c80319c"
		httpCaller = "b7ad6b7169203331"
	)
	auth := "Bearer " + key
	check(map[string]string{"authorization": auth, "traceparent": "00-" + traceID + "-" + callerSpan + "-01", "tracestate": "acme=1"})
	check(map[string]string{"authorization": auth}) // no trace: the root sampler (0) records nothing
	check(map[string]string{"authorization": auth, "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-00"})
	check(map[string]string{"authorization": auth, "traceparent": "not a traceparent"}) // a new root: not recorded

	// Forward-auth over HTTP joins its caller's trace the same way.
	req, _ := http.NewRequest(http.MethodGet, "http://"+ha.String()+"/authz/api/v1/things", nil)
	req.Header.Set("Authorization", auth)
	req.Header.Set("Traceparent", "00-"+httpTrace+"-"+httpCaller+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("forward-auth: %d", resp.StatusCode)
	}

	if err := stop(); err != nil { // Run flushes the exporter before it returns
		t.Fatalf("Run: %v", err)
	}
	spans := recv.Spans()
	byParent := map[string][]otlprecv.Span{}
	for _, sp := range spans {
		if tid := hex.EncodeToString(sp.TraceId); tid != traceID && tid != httpTrace {
			t.Errorf("span %q in trace %s: only the two sampled callers' traces may be recorded", sp.Name, tid)
		}
		if sp.Service != "keygate-under-test" {
			t.Errorf("span %q from service %q, want OTEL_SERVICE_NAME's", sp.Name, sp.Service)
		}
		for _, a := range sp.Attributes {
			if v := a.GetValue().GetStringValue(); strings.Contains(v, key) || strings.Contains(v, hex.EncodeToString(hash[:])) {
				t.Errorf("span %q attribute %s holds the key or its hash", sp.Name, a.Key)
			}
		}
		byParent[hex.EncodeToString(sp.ParentSpanId)] = append(byParent[hex.EncodeToString(sp.ParentSpanId)], sp)
	}
	root := only(t, byParent[callerSpan], "Check span under the caller's")
	if hex.EncodeToString(root.TraceId) != traceID || root.Name != "envoy.service.auth.v3.Authorization/Check" ||
		root.Kind != tracepb.Span_SPAN_KIND_SERVER || root.TraceState != "acme=1" {
		t.Errorf("Check span: trace %x name %q kind %v tracestate %q", root.TraceId, root.Name, root.Kind, root.TraceState)
	}
	wantAttrs(t, root, map[string]string{"keygate.decision.code": "ok", "keygate.key.id": id, "keygate.tenant": "acme",
		"http.response.status_code": "200", "keygate.route": "default"})
	var names []string
	for _, c := range byParent[hex.EncodeToString(root.SpanId)] {
		names = append(names, c.Name)
		if !slices.Equal(c.TraceId, root.TraceId) || c.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("child %q: trace %x kind %v", c.Name, c.TraceId, c.Kind)
		}
		if c.StartTimeUnixNano < root.StartTimeUnixNano || c.EndTimeUnixNano > root.EndTimeUnixNano {
			t.Errorf("child %q outside its parent's time", c.Name)
		}
	}
	slices.Sort(names)
	if want := []string{"key database lookup", "redis gcra"}; !slices.Equal(names, want) {
		t.Errorf("the Check span's children %q, want %q", names, want)
	}

	hs := only(t, byParent[httpCaller], "forward-auth span under the caller's")
	if hex.EncodeToString(hs.TraceId) != httpTrace || hs.Name != "authz /authz" {
		t.Errorf("forward-auth span: trace %x name %q", hs.TraceId, hs.Name)
	}
	wantAttrs(t, hs, map[string]string{"keygate.decision.code": "ok", "keygate.key.id": id, "http.response.status_code": "200"})
	if n := len(spans); n != 4 {
		t.Errorf("%d spans, want 4: two decisions, a database lookup, a Redis call", n)
	}
}

func only(t *testing.T, spans []otlprecv.Span, what string) otlprecv.Span {
	t.Helper()
	if len(spans) != 1 {
		t.Fatalf("%d %s, want 1", len(spans), what)
	}
	return spans[0]
}

func wantAttrs(t *testing.T, sp otlprecv.Span, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, a := range sp.Attributes {
		got[a.Key] = valueString(a.Value)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("span %q: %s = %q, want %q (all: %v)", sp.Name, k, got[k], v, got)
		}
	}
}

func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	}
	return v.GetStringValue()
}
