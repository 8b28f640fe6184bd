package extauthz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/usage"
)

// memKeys is an in-memory key lookup, so the benchmark measures the
// decision and response, not a cache. Keys in down fail as a database
// that is down would, keys in over as a miss over the look-up budget.
type memKeys struct {
	recs map[keys.Hash]keys.Record
	down map[keys.Hash]bool
	over map[keys.Hash]bool
}

func (m memKeys) Lookup(_ context.Context, h keys.Hash) (keys.Record, error) {
	if m.down[h] {
		return keys.Record{}, errDatabaseDown
	}
	if m.over[h] {
		return keys.Record{}, cache.ErrOverBudget
	}
	r, ok := m.recs[h]
	if !ok {
		return keys.Record{}, cache.ErrNotFound
	}
	return r, nil
}
func (m memKeys) Peek(h keys.Hash) (keys.Record, bool, bool) {
	r, ok := m.recs[h]
	return r, ok, ok
}
func (m memKeys) Grant(string, string) (keys.Grant, bool) { return keys.Grant{}, false }

var errDatabaseDown = errors.New("database down")

// discardUsage takes the usage recorder's writes: the benchmark counts
// every decision in a real recorder, which it never flushes.
type discardUsage struct{}

func (discardUsage) AddUsage(context.Context, []store.UsageCount) error        { return nil }
func (discardUsage) TouchLastUsed(context.Context, map[string]time.Time) error { return nil }

// benchKeys are the keys of the benchmark server, one per outcome.
type benchKeys struct {
	allowed, revoked, expired, noScope, tiny, unknown, down, over string
	// restricted has allowed networks (10.0.0.0/8) and metadata; shared
	// a plan with a per-tenant window.
	restricted, shared string
}

var benchFormat = keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}

func newKey(b testing.TB) string {
	k, err := keys.Generate(benchFormat)
	if err != nil {
		b.Fatal(err)
	}
	return k
}

func benchServer(b testing.TB) (*Server, benchKeys) {
	hasher := keys.NewHasher(nil)
	k := benchKeys{allowed: newKey(b), revoked: newKey(b), expired: newKey(b), noScope: newKey(b), tiny: newKey(b),
		unknown: newKey(b), down: newKey(b), over: newKey(b), restricted: newKey(b), shared: newKey(b)}
	m := memKeys{recs: map[keys.Hash]keys.Record{}, down: map[keys.Hash]bool{hasher.Sum(k.down): true},
		over: map[keys.Hash]bool{hasher.Sum(k.over): true}}
	past := time.Now().Add(-time.Hour)
	for i, c := range []struct {
		key     string
		scopes  []string
		plan    string
		revoked time.Time
		expires time.Time
	}{
		{k.allowed, []string{"patients:read"}, "live", time.Time{}, time.Time{}},
		{k.revoked, []string{"patients:read"}, "live", past, time.Time{}},
		{k.expired, []string{"patients:read"}, "live", time.Time{}, past},
		{k.noScope, []string{"forms:read"}, "live", time.Time{}, time.Time{}},
		{k.tiny, []string{"patients:read"}, "tiny", time.Time{}, time.Time{}},
		{k.restricted, []string{"patients:read"}, "live", time.Time{}, time.Time{}},
		{k.shared, []string{"patients:read"}, "shared", time.Time{}, time.Time{}},
	} {
		id := "key_" + strconv.Itoa(i)
		m.recs[hasher.Sum(c.key)] = keys.Record{ID: id, Hash: hasher.Sum(c.key), Prefix: c.key[:15], Tenant: "acme", Env: keys.EnvLive,
			Scopes: c.scopes, Plan: c.plan, Lineage: id, RevokedAt: c.revoked, ExpiresAt: c.expires}
	}
	r := m.recs[hasher.Sum(k.restricted)]
	r.AllowedCIDRs, r.Metadata = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, map[string]string{"team": "billing"}
	m.recs[r.Hash] = r
	s := benchServerOn(b, m)
	// Spend the tiny plan: every later request of that key is limited.
	if _, err := s.Check(context.Background(), benchReq("Bearer "+k.tiny)); err != nil {
		b.Fatal(err)
	}
	return s, k
}

// benchServerOn is the benchmark server over kl.
func benchServerOn(b testing.TB, kl keyLookup) *Server {
	formats, _ := keys.NewFormats([]keys.Format{benchFormat})
	required := true
	pol, err := policy.New(policy.Config{Routes: []policy.Route{
		{Methods: []string{"GET"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:read"}},
		{Methods: []string{"GET"}, Path: "/api/v1/orgs/**", Scopes: []string{"patients:read"}, OrgRequired: &required},
	}})
	if err != nil {
		b.Fatal(err)
	}
	lim, err := limits.New(limits.Config{Plans: map[string][]limits.Window{
		"live":   {{Limit: 1 << 30, Period: time.Hour}},
		"tiny":   {{Limit: 1, Period: time.Hour}},
		"huge":   {{Limit: 1 << 30, Period: 24 * time.Hour}},
		"shared": {{Limit: 1 << 30, Period: time.Hour}, {Limit: 1 << 30, Period: time.Hour, Per: limits.PerTenant}},
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	rec, err := usage.New(usage.Config{FlushInterval: time.Hour}, discardUsage{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{Formats: formats, Hasher: keys.NewHasher(nil), Policy: pol, Realm: "keygate",
		Headers: HeaderNames{Auth: "authorization", Org: "x-organization-id", KeyID: "x-keygate-key-id", Tenant: "x-keygate-tenant",
			OrgOut: "x-keygate-org", Env: "x-keygate-env", Scopes: "x-keygate-scopes", Plan: "x-keygate-plan",
			Metadata: map[string]string{"team": "x-keygate-team"}}},
		kl, lim, rec, nil, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchReq(auth string, kv ...string) *authv3.CheckRequest {
	path := "/api/v1/patients/p1"
	h := map[string]string{":method": "GET", ":path": path, "x-request-id": "req-1"}
	if auth != "" {
		h["authorization"] = auth
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
		if kv[i] == ":path" {
			path = kv[i+1]
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: h}}}}
}

// BenchmarkCheck is one Check without network — the decision, the
// CheckResponse and the log line — for an allowed key and each denial;
// "notices" are the allowed and rate-limited cases again with the
// key.rate_limited notices on (events.Publisher), which the allowed path
// never reaches.
func BenchmarkCheck(b *testing.B) {
	s, k := benchServer(b)
	ns, nk := benchServer(b)
	ns.cfg.RateLimited = benchPublisher(b)
	cases := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"allowed", benchReq("Bearer " + k.allowed)},
		{"missing_api_key", benchReq("")},
		{"malformed_authorization", benchReq("Basic dXNlcjpwYXNz")},
		{"invalid_api_key/checksum", benchReq("Bearer sk_live_" + k.allowed[8:len(k.allowed)-1] + "x")},
		{"invalid_api_key/unknown", benchReq("Bearer " + k.unknown)},
		{"api_key_revoked", benchReq("Bearer " + k.revoked)},
		{"api_key_expired", benchReq("Bearer " + k.expired)},
		{"route_not_found", benchReq("Bearer "+k.allowed, ":path", "/nope")},
		{"missing_organization", benchReq("Bearer "+k.allowed, ":path", "/api/v1/orgs/o1")},
		{"invalid_organization", benchReq("Bearer "+k.allowed, "x-organization-id", "not an org")},
		{"organization_forbidden", benchReq("Bearer "+k.allowed, "x-organization-id", "other-org")},
		{"insufficient_scope", benchReq("Bearer " + k.noScope)},
		{"rate_limited", benchReq("Bearer " + k.tiny)},
		{"unavailable", benchReq("Bearer " + k.down)},
		{"unavailable/over_budget", benchReq("Bearer " + k.over)},
	}
	run := func(name string, srv *Server, req *authv3.CheckRequest) {
		want, _, _ := strings.Cut(name, "/")
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				resp := checkForWire(ctx, srv, req)
				if resp.GetStatus().GetMessage() != want && !(want == "allowed" && resp.GetOkResponse() != nil) {
					b.Fatalf("%s: %v", want, resp.GetStatus())
				}
			}
		})
	}
	for _, c := range cases {
		run(c.name, s, c.req)
	}
	from := func(r *authv3.CheckRequest, addr string) *authv3.CheckRequest {
		r.Attributes.Source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: addr}}}}
		return r
	}
	// A key with networks and metadata, and one on a plan with a tenant
	// window: what those cost over "allowed".
	run("allowed/restricted", s, from(benchReq("Bearer "+k.restricted), "10.1.2.3"))
	run("ip_not_allowed", s, from(benchReq("Bearer "+k.restricted), "192.0.2.1"))
	run("allowed/tenant_window", s, benchReq("Bearer "+k.shared))
	run("allowed/notices", ns, benchReq("Bearer "+nk.allowed))
	run("rate_limited/notices", ns, benchReq("Bearer "+nk.tiny))
}

// benchPublisher is an events publisher over a SQLite outbox with one
// endpoint that wants every event, key.rate_limited included. It is not
// run: its notices queue fills and the rest are dropped, as when its
// writer falls behind; a key's later 429s in a window are remembered.
func benchPublisher(b *testing.B) *events.Publisher {
	db, err := store.Open(b.Context(), "sqlite:"+filepath.Join(b.TempDir(), "events.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	secret, err := events.ParseSecret("whsec_" + strings.Repeat("A", 44))
	if err != nil {
		b.Fatal(err)
	}
	p, err := events.New(events.Config{Endpoints: []events.Endpoint{{URL: "http://127.0.0.1:9/hook", Secret: secret}}},
		db, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// checkForWire decides req as the gRPC handler does with Keygate's codec:
// the request mapped as wire.go maps it, the answer built for the codec
// (an allowed one as okWire). The codec's encoding is not included.
func checkForWire(ctx context.Context, s *Server, req *authv3.CheckRequest) *authv3.CheckResponse {
	r := s.names.fromCheck(req)
	switch resp := s.check(ctx, &r, time.Now(), true).(type) {
	case *okWire:
		return any(resp.resp).(*authv3.CheckResponse)
	case *authv3.CheckResponse:
		return resp
	default:
		panic(fmt.Sprintf("check answered %T", resp))
	}
}

// BenchmarkCheckInvalidFlood is a flood of well-formed keys nobody has,
// each different, as a key-guessing client sends them.
func BenchmarkCheckInvalidFlood(b *testing.B) {
	s, _ := benchServer(b)
	reqs := make([]*authv3.CheckRequest, 4096)
	for i := range reqs {
		reqs[i] = benchReq("Bearer " + newKey(b))
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, err := s.Check(ctx, reqs[i%len(reqs)])
		if err != nil || resp.GetStatus().GetMessage() != "invalid_api_key" {
			b.Fatalf("%v %v", resp.GetStatus(), err)
		}
		i++
	}
}

// BenchmarkCheckInvalidFloodCache is the same flood through the real key
// cache over SQLite, holding every active key, with the default budget of
// database look-ups for misses: a few guesses are looked up (and
// remembered), the rest are answered unknown from memory.
func BenchmarkCheckInvalidFloodCache(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(b.TempDir(), "k.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	kc, err := cache.New(cache.Config{MaxKeys: 1000, NegativeTTL: time.Minute, PollInterval: time.Second, QueryTimeout: 5 * time.Second, WarmStart: true},
		db, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	done := make(chan struct{})
	go func() { kc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); !kc.Complete(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the cache did not load")
		}
	}
	s := benchServerOn(b, kc)
	reqs := make([]*authv3.CheckRequest, 16384)
	for i := range reqs {
		reqs[i] = benchReq("Bearer " + newKey(b))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, err := s.Check(ctx, reqs[i%len(reqs)])
		if err != nil || resp.GetStatus().GetMessage() != "invalid_api_key" {
			b.Fatalf("%v %v", resp.GetStatus(), err)
		}
		i++
	}
	st := kc.Stats()
	b.ReportMetric(float64(st.Misses)/float64(i), "lookups/op")
}

// BenchmarkDecide is the decision path alone: request mapping and Decide,
// without rendering the CheckResponse or logging.
func BenchmarkDecide(b *testing.B) {
	s, k := benchServer(b)
	r := benchReq("Bearer " + k.allowed)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req := s.names.fromCheck(r)
		if d := s.Decide(ctx, &req); d.Code != CodeOK {
			b.Fatal(d.Code)
		}
	}
}

// BenchmarkEncode is the allowed response's encoding, as gRPC asks the
// server's codec for it.
func BenchmarkEncode(b *testing.B) {
	s, k := benchServer(b)
	resp, err := s.Check(context.Background(), benchReq("Bearer "+k.allowed))
	if err != nil || resp.GetOkResponse() == nil {
		b.Fatal(resp, err)
	}
	c := codec{fallback: encoding.GetCodecV2("proto")}
	b.ReportAllocs()
	for b.Loop() {
		out, err := c.Marshal(resp)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
}

// BenchmarkDecodeRequest is reading a CheckRequest of nine headers, as
// the load harness sends it: from the wire (wire.go) and, for comparison,
// with protobuf-go and fromCheck, as Keygate's handler does without its
// codec.
func BenchmarkDecodeRequest(b *testing.B) {
	h := map[string]string{
		":method": "GET", ":path": "/api/v1/patients/p1", ":authority": "api.example.com", ":scheme": "http",
		"x-request-id": "bench-1", "user-agent": "keygate-bench", "accept": "*/*", "x-forwarded-proto": "http",
		"authorization": "Bearer sk_live_0123456789abcdefghijklmnopqrstuvwxyz",
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "bench-1", Method: "GET", Path: "/api/v1/patients/p1", Host: "api.example.com", Scheme: "http", Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: map[string]string{policy.ExtScopes: "patients:read"},
	}}
	raw, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	names := &headerNames{auth: "authorization", org: "x-organization-id", injected: map[string]bool{}, exts: &extCache{}}
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := wireCheck{names: names}
			if err := w.decode(raw); err != nil || w.req.Authorization == "" {
				b.Fatal(err)
			}
		}
	})
	b.Run("protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var m authv3.CheckRequest
			if err := proto.Unmarshal(raw, &m); err != nil {
				b.Fatal(err)
			}
			if r := names.fromCheck(&m); r.Authorization == "" {
				b.Fatal("no authorization")
			}
		}
	})
}
