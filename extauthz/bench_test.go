package extauthz

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/cache"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
)

// memKeys is an in-memory key lookup, so the benchmark measures the
// decision and response, not a cache.
type memKeys map[keys.Hash]keys.Record

func (m memKeys) Lookup(_ context.Context, h keys.Hash) (keys.Record, error) {
	r, ok := m[h]
	if !ok {
		return keys.Record{}, errNotFoundForBench
	}
	return r, nil
}
func (m memKeys) Peek(h keys.Hash) (keys.Record, bool, bool) {
	r, ok := m[h]
	return r, ok, ok
}
func (m memKeys) Grant(string, string) (keys.Grant, bool) { return keys.Grant{}, false }

var errNotFoundForBench = cache.ErrNotFound

type nopUsage struct{}

func (nopUsage) Touch(string, time.Time) {}

func benchServer(b *testing.B) (*Server, string) {
	formats, _ := keys.NewFormats([]keys.Format{{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}})
	key, _ := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	hasher := keys.NewHasher(nil)
	pol, err := policy.New(policy.Config{Routes: []policy.Route{{Methods: []string{"GET"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:read"}}}})
	if err != nil {
		b.Fatal(err)
	}
	lim, err := limits.New(limits.Config{Plans: map[string][]limits.Window{"live": {{Limit: 1 << 30, Period: time.Hour}}}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	km := memKeys{hasher.Sum(key): {ID: "key_1", Hash: hasher.Sum(key), Prefix: key[:15], Tenant: "acme", Env: keys.EnvLive,
		Scopes: []string{"patients:read"}, Plan: "live", Lineage: "key_1"}}
	s, err := New(Config{Formats: formats, Hasher: hasher, Policy: pol, Realm: "keygate",
		Headers: HeaderNames{Auth: "authorization", Org: "x-organization-id", KeyID: "x-keygate-key-id", Tenant: "x-keygate-tenant",
			OrgOut: "x-keygate-org", Env: "x-keygate-env", Scopes: "x-keygate-scopes", Plan: "x-keygate-plan"}},
		km, lim, nopUsage{}, nil, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return s, key
}

func benchReq(auth string) *authv3.CheckRequest {
	h := map[string]string{":method": "GET", ":path": "/api/v1/patients/p1", "x-request-id": "req-1"}
	if auth != "" {
		h["authorization"] = auth
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/v1/patients/p1", Headers: h}}}}
}

func BenchmarkCheck(b *testing.B) {
	s, key := benchServer(b)
	unknown, _ := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	cases := []struct{ name, auth, want string }{
		{"allowed", "Bearer " + key, ""},
		{"missing_api_key", "", "missing_api_key"},
		{"invalid_checksum", "Bearer sk_live_" + key[8:len(key)-1] + "x", "invalid_api_key"},
		{"unknown_key", "Bearer " + unknown, "invalid_api_key"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := benchReq(c.auth)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := s.Check(ctx, r)
				if err != nil || (c.want == "") != (resp.GetOkResponse() != nil) {
					b.Fatalf("%v %v", resp, err)
				}
			}
		})
	}
}

// BenchmarkDecide is the decision path alone: request mapping and Decide,
// without rendering the CheckResponse or logging.
func BenchmarkDecide(b *testing.B) {
	s, key := benchServer(b)
	r := benchReq("Bearer " + key)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req := s.names.fromCheck(r)
		if d := s.Decide(ctx, &req); d.Code != CodeOK {
			b.Fatal(d.Code)
		}
	}
}
