package extauthz_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/usage"
)

// env is one running Check server over a real SQLite file and a real
// loopback gRPC connection.
type env struct {
	t      *testing.T
	db     store.DB
	admin  *admin.Service
	cache  *cache.Cache
	client authv3.AuthorizationClient
	// plain reaches the same Server registered on a gRPC server without
	// Keygate's codec: the request decoded in full, the response by gRPC.
	plain authv3.AuthorizationClient
	logs  *syncbuf.Buffer
	usage *usage.Recorder
	opts  envOpts
}

type envOpts struct {
	routes      []policy.Route
	defRoute    *policy.Route
	orgRequired bool
	plans       map[string][]limits.Window
	redisURL    string
	onRedisErr  limits.Mode
	failures    *limits.Failures
	trustedHops int
	// dbURL is the key database (default: a fresh SQLite file). On
	// PostgreSQL the cache also follows LISTEN/NOTIFY, as serve wires it.
	dbURL string
	// cache overrides the cache's MaxKeys, MissLookups, PollInterval and
	// QueryTimeout where set.
	cache cache.Config
	// seed runs before the cache starts, so what it creates is warm-loaded.
	seed func(*admin.Service)
	// metaHeaders is headers.metadata.
	metaHeaders map[string]string
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	dbOpts := store.Options{QueryTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second}
	if o.dbURL == "" {
		o.dbURL, dbOpts = "sqlite:"+filepath.Join(t.TempDir(), "keygate.db"), store.Options{}
	}
	db, err := store.Open(ctx, o.dbURL, dbOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	formats, err := keys.NewFormats([]keys.Format{
		{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true},
		{Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true},
		{Prefix: "cc_live_", Env: keys.EnvLive, Checksum: false},
	})
	if err != nil {
		t.Fatal(err)
	}
	hasher := keys.NewHasher(nil)
	pol, err := policy.New(policy.Config{Routes: o.routes, DefaultRoute: o.defRoute, OrgRequired: o.orgRequired})
	if err != nil {
		t.Fatal(err)
	}
	if o.plans == nil {
		o.plans = map[string][]limits.Window{
			"test": {{Limit: 100, Period: time.Hour}, {Limit: 1000, Period: 24 * time.Hour}},
			"live": {{Limit: 10000, Period: time.Hour}},
			"tiny": {{Limit: 2, Period: time.Hour}},
		}
	}
	plans := []string{}
	for p := range o.plans {
		plans = append(plans, p)
	}
	svc, err := admin.New(admin.Config{Formats: formats, Hasher: hasher, Plans: plans,
		ValidScope: func(s string) error { return policy.ValidScope(policy.ScopeResourceAction, s) }, Grace: time.Hour}, db)
	if err != nil {
		t.Fatal(err)
	}
	if o.seed != nil {
		o.seed(svc)
	}
	ccfg := cache.Config{MaxKeys: 1000, NegativeTTL: time.Minute, PollInterval: 50 * time.Millisecond, QueryTimeout: time.Second, WarmStart: true,
		MissLookups: o.cache.MissLookups}
	if o.cache.MaxKeys != 0 {
		ccfg.MaxKeys = o.cache.MaxKeys
	}
	if o.cache.PollInterval != 0 {
		ccfg.PollInterval = o.cache.PollInterval
	}
	if o.cache.QueryTimeout != 0 {
		ccfg.QueryTimeout = o.cache.QueryTimeout
	}
	kc, err := cache.New(ccfg, db, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	// Run ends before Close (cleanups run last-registered first): Close
	// must not pull the cache from under a refresh.
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { kc.Run(runCtx); close(ran) }()
	t.Cleanup(func() { stopRun(); <-ran })
	if n, ok := db.(store.Notifier); ok {
		go n.Listen(ctx, kc.Notify)
	}
	if o.onRedisErr == "" {
		o.onRedisErr = limits.ModeLocal
	}
	lim, err := limits.New(limits.Config{Plans: o.plans, RedisURL: o.redisURL, OnRedisError: o.onRedisErr}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lim.Close() })
	rec, err := usage.New(usage.Config{FlushInterval: time.Hour}, db, log)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := extauthz.Config{
		Formats: formats, Hasher: hasher, Policy: pol, Realm: "keygate", TrustedHops: o.trustedHops,
		Headers: extauthz.HeaderNames{Auth: "authorization", Org: "x-organization-id", KeyID: "x-keygate-key-id",
			Tenant: "x-keygate-tenant", OrgOut: "x-keygate-org", Env: "x-keygate-env", Scopes: "x-keygate-scopes", Plan: "x-keygate-plan",
			Metadata: o.metaHeaders},
	}
	if o.failures != nil {
		ecfg.Failures = o.failures
	}
	srv, err := extauthz.New(ecfg, kc, lim, rec, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	// The server is built as `keygate serve` builds it: requests read from
	// the wire, stream workers, and with -tags vtprotobuf every response
	// written by the generated encoder.
	opts, err := extauthz.ServerOptions()
	if err != nil {
		t.Fatal(err)
	}
	client := serveOn(t, srv, opts...)
	plain := serveOn(t, srv)
	for !kc.Ready() {
		time.Sleep(5 * time.Millisecond)
	}
	return &env{t: t, db: db, admin: svc, cache: kc, client: client, plain: plain, logs: logs, usage: rec, opts: o}
}

// serveOn serves srv on a new gRPC server built with opts, on loopback.
func serveOn(t *testing.T, srv *extauthz.Server, opts ...grpc.ServerOption) authv3.AuthorizationClient {
	t.Helper()
	gs := grpc.NewServer(opts...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func (e *env) create(r admin.CreateRequest) admin.Created {
	e.t.Helper()
	c, err := e.admin.Create(context.Background(), r)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// req builds a CheckRequest as Envoy does, with the headers map.
func req(method, path string, headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}},
		ContextExtensions: ext,
	}}
}

// rawReq builds a CheckRequest with header_map entries (possibly repeated)
// carrying raw_value, as Envoy does with encode_raw_headers.
func rawReq(method, path string, headers [][2]string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	for _, kv := range headers {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, HeaderMap: hm}},
	}}
}

func (e *env) check(r *authv3.CheckRequest) *authv3.CheckResponse {
	e.t.Helper()
	return e.checkOn(e.client, r)
}

// checkPlain is check through the server without Keygate's codec.
func (e *env) checkPlain(r *authv3.CheckRequest) *authv3.CheckResponse {
	e.t.Helper()
	return e.checkOn(e.plain, r)
}

// codecs are both ways a request reaches the Server, for tests to run
// their cases through each.
func (e *env) codecs() []struct {
	name  string
	check func(*authv3.CheckRequest) *authv3.CheckResponse
} {
	return []struct {
		name  string
		check func(*authv3.CheckRequest) *authv3.CheckResponse
	}{{"wire", e.check}, {"decoded", e.checkPlain}}
}

func (e *env) checkOn(c authv3.AuthorizationClient, r *authv3.CheckRequest) *authv3.CheckResponse {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, r)
	if err != nil {
		e.t.Fatalf("Check returned a gRPC error (denials must be responses): %v", err)
	}
	return resp
}

type errBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Type      string `json:"type"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

func headerMap(opts []*corev3.HeaderValueOption) map[string]string {
	m := map[string]string{}
	for _, o := range opts {
		m[o.GetHeader().GetKey()] = o.GetHeader().GetValue()
	}
	return m
}

// wantDenied checks a denial's status, codes, body and headers.
func wantDenied(t *testing.T, resp *authv3.CheckResponse, status int, code string, grpcCode codes.Code) (errBody, map[string]string) {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("want denial %s, got %v", code, resp)
	}
	if got := int(d.GetStatus().GetCode()); got != status {
		t.Errorf("HTTP status %d, want %d", got, status)
	}
	if got := codes.Code(resp.GetStatus().GetCode()); got != grpcCode {
		t.Errorf("gRPC status %v, want %v", got, grpcCode)
	}
	var b errBody
	if err := json.Unmarshal([]byte(d.GetBody()), &b); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, d.GetBody())
	}
	if b.Error.Code != code || b.Error.Message == "" || b.Error.Type == "" || b.Error.RequestID == "" {
		t.Errorf("body %+v, want code %s with message, type and request_id", b.Error, code)
	}
	md := resp.GetDynamicMetadata().GetFields()
	if md["code"].GetStringValue() != code || md["request_id"].GetStringValue() != b.Error.RequestID {
		t.Errorf("dynamic metadata %v, want code %s and request_id %s", md, code, b.Error.RequestID)
	}
	h := headerMap(d.GetHeaders())
	if h["content-type"] != "application/json" {
		t.Errorf("content-type %q", h["content-type"])
	}
	if status == 401 && !strings.HasPrefix(h["www-authenticate"], `Bearer realm="keygate"`) {
		t.Errorf("401 without WWW-Authenticate: %v", h)
	}
	if status != 401 && h["www-authenticate"] != "" {
		t.Errorf("WWW-Authenticate on a %d", status)
	}
	for _, o := range d.GetHeaders() {
		if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: append action %v", o.GetHeader().GetKey(), o.GetAppendAction())
		}
	}
	return b, h
}

func bearer(k string) map[string]string { return map[string]string{"authorization": "Bearer " + k} }

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

var _ = io.Discard
