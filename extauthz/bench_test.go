package extauthz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
)

// memKeys is an in-memory key lookup, so the benchmark measures the
// decision and response, not a cache. Keys in down fail as a database
// that is down would.
type memKeys struct {
	recs map[keys.Hash]keys.Record
	down map[keys.Hash]bool
}

func (m memKeys) Lookup(_ context.Context, h keys.Hash) (keys.Record, error) {
	if m.down[h] {
		return keys.Record{}, errDatabaseDown
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

type nopUsage struct{}

func (nopUsage) Touch(string, time.Time) {}

// benchKeys are the keys of the benchmark server, one per outcome.
type benchKeys struct {
	allowed, revoked, expired, noScope, tiny, unknown, down string
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
	formats, _ := keys.NewFormats([]keys.Format{benchFormat})
	hasher := keys.NewHasher(nil)
	required := true
	pol, err := policy.New(policy.Config{Routes: []policy.Route{
		{Methods: []string{"GET"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:read"}},
		{Methods: []string{"GET"}, Path: "/api/v1/orgs/**", Scopes: []string{"patients:read"}, OrgRequired: &required},
	}})
	if err != nil {
		b.Fatal(err)
	}
	lim, err := limits.New(limits.Config{Plans: map[string][]limits.Window{
		"live": {{Limit: 1 << 30, Period: time.Hour}},
		"tiny": {{Limit: 1, Period: time.Hour}},
		"huge": {{Limit: 1 << 30, Period: 24 * time.Hour}},
	}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	k := benchKeys{allowed: newKey(b), revoked: newKey(b), expired: newKey(b), noScope: newKey(b), tiny: newKey(b),
		unknown: newKey(b), down: newKey(b)}
	m := memKeys{recs: map[keys.Hash]keys.Record{}, down: map[keys.Hash]bool{hasher.Sum(k.down): true}}
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
	} {
		id := "key_" + strconv.Itoa(i)
		m.recs[hasher.Sum(c.key)] = keys.Record{ID: id, Hash: hasher.Sum(c.key), Prefix: c.key[:15], Tenant: "acme", Env: keys.EnvLive,
			Scopes: c.scopes, Plan: c.plan, Lineage: id, RevokedAt: c.revoked, ExpiresAt: c.expires}
	}
	s, err := New(Config{Formats: formats, Hasher: hasher, Policy: pol, Realm: "keygate",
		Headers: HeaderNames{Auth: "authorization", Org: "x-organization-id", KeyID: "x-keygate-key-id", Tenant: "x-keygate-tenant",
			OrgOut: "x-keygate-org", Env: "x-keygate-env", Scopes: "x-keygate-scopes", Plan: "x-keygate-plan"}},
		m, lim, nopUsage{}, nil, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	// Spend the tiny plan: every later request of that key is limited.
	if _, err := s.Check(context.Background(), benchReq("Bearer "+k.tiny)); err != nil {
		b.Fatal(err)
	}
	return s, k
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
// CheckResponse and the log line — for an allowed key and each denial.
func BenchmarkCheck(b *testing.B) {
	s, k := benchServer(b)
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
	}
	for _, c := range cases {
		want, _, _ := strings.Cut(c.name, "/")
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				resp := checkForWire(ctx, s, c.req)
				if resp.GetStatus().GetMessage() != want && !(want == "allowed" && resp.GetOkResponse() != nil) {
					b.Fatalf("%s: %v", want, resp.GetStatus())
				}
			}
		})
	}
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
