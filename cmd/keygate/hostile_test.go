package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/testpg"
)

// TestNoSecretsInLogs runs CLI, admin API and Check traffic — valid,
// invalid, revoked, rolled keys, a Redis that refuses connections — with
// every log line captured, and looks for any secret in them.
func TestNoSecretsInLogs(t *testing.T) {
	dbURL, err := url.Parse(testpg.NewSchema(t, testpg.SharedURL()))
	if err != nil {
		t.Fatal(err)
	}
	const dbPassword, redisPassword, adminToken = "db-Pa55w0rd-xyzzy", "redis-Pa55w0rd-plugh", "admin-T0ken-frobozz"
	dbURL.User = url.UserPassword("postgres", dbPassword) // trust auth ignores it; Keygate must still not print it
	env := map[string]string{
		"KEYGATE_DATABASE_URL":        dbURL.String(),
		"KEYGATE_REDIS_URL":           "redis://:" + redisPassword + "@127.0.0.1:1/0",
		"KEYGATE_ADMIN_TOKEN":         adminToken,
		"KEYGATE_LOG_LEVEL":           "debug",
		"KEYGATE_AUTH_FAILURES_LIMIT": "3",
	}
	var secrets []string
	id, key := createKeyProc(t, env, "--tenant", "acme", "--env", "live", "--scopes", "patients:read")
	secrets = append(secrets, key)
	p := startProc(t, env)
	base := "http://" + p.httpAddr + "/admin/v1"
	code, created := httpDo(t, "POST", base+"/keys", adminToken, `{"tenant":"acme","env":"test","scopes":["patients:read"]}`)
	if code != 201 {
		t.Fatalf("admin create: %d", code)
	}
	secrets = append(secrets, created["key"].(string))
	_, rolled := httpDo(t, "POST", base+"/keys/"+id+"/roll", adminToken, `{"grace":"1h"}`)
	secrets = append(secrets, rolled["key"].(string))
	httpDo(t, "GET", base+"/keys", "wrong-"+adminToken, "")
	for _, k := range secrets {
		p.check(t, k)
		p.check(t, k[:len(k)-1]+"x") // a typo of a real key
	}
	for range 5 {
		p.check(t, "sk_live_"+strings.Repeat("Q", 38)) // guesses, until blocked
	}
	cliProc(t, env, "keys", "revoke", created["id"].(string))
	cliProc(t, env, "keys", "list", "--all")
	time.Sleep(200 * time.Millisecond)
	for _, k := range secrets {
		p.check(t, k)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, `"decision"`) {
		t.Fatal("no decision logs captured")
	}
	for _, s := range append(secrets, dbPassword, redisPassword, adminToken) {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%s…) appears in the logs", s[:6])
		}
	}
	for _, k := range secrets { // not even the secret part of a key
		if strings.Contains(logs, k[15:]) {
			t.Errorf("the secret part of key %s… appears in the logs", k[:15])
		}
	}
}

// TestHostileInputs sends what a hostile or broken client could make
// Envoy forward; the server answers each cleanly and stays up.
func TestHostileInputs(t *testing.T) {
	c := newCLI(t)
	var created struct{ Key string }
	json.Unmarshal([]byte(c.ok("keys", "create", "--tenant", "acme", "--scopes", "patients:read", "--json")), &created)
	cfg := loadCLIConfig(t, c)
	grpcAddr, _, _ := startServe(t, cfg)
	waitReady(t, grpcAddr)
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	ask := func(h map[string]string, hm []*corev3.HeaderValue, path string, ext map[string]string) (*authv3.CheckResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hr := &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: h}
		if hm != nil {
			hr.HeaderMap = &corev3.HeaderMap{Headers: hm}
		}
		return client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: hr}, ContextExtensions: ext}})
	}
	code := func(resp *authv3.CheckResponse) string {
		if resp.GetOkResponse() != nil {
			return "ok"
		}
		var b struct{ Error struct{ Code string } }
		json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &b)
		return b.Error.Code
	}
	many := map[string]string{"authorization": "Bearer " + created.Key}
	for i := range 5000 {
		many["x-junk-"+strings.Repeat("a", i%50)+string(rune('a'+i%26))+strings.Repeat("b", i/26%10)] = strings.Repeat("v", 64)
	}
	ext := map[string]string{"keygate.scopes": "patients:read"}
	cases := []struct {
		name string
		h    map[string]string
		hm   []*corev3.HeaderValue
		path string
		ext  map[string]string
		want string
	}{
		{"empty request", nil, nil, "", nil, "missing_api_key"},
		{"huge authorization", map[string]string{"authorization": "Bearer " + strings.Repeat("k", 200<<10)}, nil, "/", ext, "invalid_api_key"},
		{"huge organization", map[string]string{"authorization": "Bearer " + created.Key, "x-organization-id": strings.Repeat("o", 200<<10)}, nil, "/", ext, "invalid_organization"},
		{"non-utf8 raw header", nil, []*corev3.HeaderValue{{Key: "authorization", RawValue: []byte("Bearer \xff\xfe\xfd")}}, "/", ext, "invalid_api_key"},
		{"control bytes in token", map[string]string{"authorization": "Bearer sk_live_\x01\x02"}, nil, "/", ext, "invalid_api_key"},
		{"huge path", map[string]string{"authorization": "Bearer " + created.Key}, nil, "/" + strings.Repeat("a/", 100<<10), nil, "route_not_found"},
		{"many headers", many, nil, "/", ext, "ok"},
		{"bad context extension", map[string]string{"authorization": "Bearer " + created.Key}, nil, "/", map[string]string{"keygate.org_required": "maybe"}, "unavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ask(tc.h, tc.hm, tc.path, tc.ext)
			if err != nil {
				t.Fatalf("gRPC error for a bad input (want a denial): %v", err)
			}
			if got := code(resp); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
	// Bytes that are no CheckRequest, or one with a string that is not
	// UTF-8 where Keygate reads it: refused as gRPC refuses undecodable
	// requests (Internal), never answered as if they were requests.
	for name, raw := range map[string][]byte{
		"truncated":     {0x0a, 0x40, 0x22},
		"bad tag":       {0x00, 0x01},
		"non-utf8 path": []byte("\x0a\x0a\x22\x08\x12\x06\x22\x04/\xff\xfe\xfd"),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var resp authv3.CheckResponse
		err := conn.Invoke(ctx, authv3.Authorization_Check_FullMethodName, rawRequest(raw), &resp, grpc.ForceCodecV2(rawCodec{}))
		cancel()
		if status.Code(err) != codes.Internal {
			t.Errorf("%s: %v (%v), want an Internal error", name, err, &resp)
		}
	}
	// Beyond the gRPC message limit (1 MiB): refused by the transport,
	// and the server stays up.
	_, err = ask(map[string]string{"authorization": "Bearer " + strings.Repeat("k", 2<<20)}, nil, "/", nil)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("2 MiB request: %v, want ResourceExhausted", err)
	}
	if resp, err := ask(map[string]string{"authorization": "Bearer " + created.Key}, nil, "/", ext); err != nil || code(resp) != "ok" {
		t.Fatalf("server not answering after hostile input: %v", err)
	}
}

// rawRequest is a request message already encoded, sent as it is.
type rawRequest []byte

// rawCodec sends rawRequests and decodes responses with protobuf-go.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(rawRequest))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}
