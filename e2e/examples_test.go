package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	sigsyaml "sigs.k8s.io/yaml"
)

func readExample(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHTTPExampleEnvoy decodes examples/envoy-http-service/envoy.yaml as an
// Envoy v3 bootstrap (unknown fields and bad types fail, as in Envoy) and
// checks the ext_authz http_service points at Keygate's /authz.
func TestHTTPExampleEnvoy(t *testing.T) {
	js, err := sigsyaml.YAMLToJSON(readExample(t, "envoy-http-service/envoy.yaml"))
	if err != nil {
		t.Fatalf("envoy.yaml is not YAML: %v", err)
	}
	var bs bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &bs); err != nil {
		t.Fatalf("envoy.yaml is not an Envoy v3 bootstrap: %v", err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml fails Envoy's validation rules: %v", err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := bs.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var ea extauthzv3.ExtAuthz
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatalf("first HTTP filter is not ext_authz: %v", err)
	}
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow: true lets requests through when Keygate is down")
	}
	hs := ea.GetHttpService()
	if hs.GetPathPrefix() != "/authz" || hs.GetServerUri().GetUri() != "http://keygate:9090" {
		t.Errorf("http_service: path_prefix %q uri %q", hs.GetPathPrefix(), hs.GetServerUri().GetUri())
	}
	var clusters []string
	for _, c := range bs.GetStaticResources().GetClusters() {
		clusters = append(clusters, c.GetName())
	}
	if !slices.Contains(clusters, hs.GetServerUri().GetCluster()) {
		t.Errorf("http_service cluster %q not among %v", hs.GetServerUri().GetCluster(), clusters)
	}
	var req []string
	for _, p := range ea.GetAllowedHeaders().GetPatterns() {
		req = append(req, p.GetExact())
	}
	for _, h := range []string{"authorization", "x-organization-id"} {
		if !slices.Contains(req, h) {
			t.Errorf("allowed_headers %v lack %s", req, h)
		}
	}
	resp := hs.GetAuthorizationResponse()
	if p := resp.GetAllowedUpstreamHeaders().GetPatterns(); len(p) != 1 || p[0].GetPrefix() != "x-keygate-" {
		t.Errorf("allowed_upstream_headers %v, want prefix x-keygate-", p)
	}
	var client []string
	for _, p := range resp.GetAllowedClientHeaders().GetPatterns() {
		client = append(client, p.GetExact()+p.GetPrefix())
	}
	for _, h := range []string{"ratelimit", "retry-after", "www-authenticate", "content-type"} {
		if !slices.Contains(client, h) {
			t.Errorf("allowed_client_headers %v lack %s", client, h)
		}
	}
}

// TestHTTPExampleTraefik parses examples/traefik/dynamic.yaml and checks the
// forwardAuth middleware: Keygate's /authz, untrusted X-Forwarded-* (a
// client must not pick its route), the x-keygate-* headers passed on, and
// the key stripped after authorization.
func TestHTTPExampleTraefik(t *testing.T) {
	var doc struct {
		HTTP struct {
			Routers map[string]struct {
				Rule        string   `yaml:"rule"`
				EntryPoints []string `yaml:"entryPoints"`
				Service     string   `yaml:"service"`
				Middlewares []string `yaml:"middlewares"`
			} `yaml:"routers"`
			Middlewares map[string]struct {
				ForwardAuth *struct {
					Address                  string   `yaml:"address"`
					TrustForwardHeader       bool     `yaml:"trustForwardHeader"`
					AuthRequestHeaders       []string `yaml:"authRequestHeaders"`
					AuthResponseHeaders      []string `yaml:"authResponseHeaders"`
					AuthResponseHeadersRegex string   `yaml:"authResponseHeadersRegex"`
				} `yaml:"forwardAuth"`
				Headers *struct {
					CustomRequestHeaders map[string]string `yaml:"customRequestHeaders"`
				} `yaml:"headers"`
			} `yaml:"middlewares"`
			Services map[string]any `yaml:"services"`
		} `yaml:"http"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(readExample(t, "traefik/dynamic.yaml"))))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("dynamic.yaml: %v", err)
	}
	r, ok := doc.HTTP.Routers["api"]
	if !ok || len(r.Middlewares) != 2 {
		t.Fatalf("router api: %+v", r)
	}
	if _, ok := doc.HTTP.Services[r.Service]; !ok {
		t.Errorf("router service %q is not defined", r.Service)
	}
	fa := doc.HTTP.Middlewares[r.Middlewares[0]].ForwardAuth
	if fa == nil {
		t.Fatalf("first middleware %q is not forwardAuth", r.Middlewares[0])
	}
	if fa.Address != "http://keygate:9090/authz" {
		t.Errorf("address %q", fa.Address)
	}
	if fa.TrustForwardHeader {
		t.Error("trustForwardHeader: true lets a client send its own X-Forwarded-Uri")
	}
	for _, h := range []string{"Authorization", "X-Organization-Id"} {
		if !slices.Contains(fa.AuthRequestHeaders, h) {
			t.Errorf("authRequestHeaders %v lack %s", fa.AuthRequestHeaders, h)
		}
	}
	for _, h := range []string{"X-Keygate-Key-Id", "X-Keygate-Tenant", "X-Keygate-Org", "X-Keygate-Env", "X-Keygate-Scopes", "X-Keygate-Plan"} {
		if !slices.Contains(fa.AuthResponseHeaders, h) {
			t.Errorf("authResponseHeaders %v lack %s", fa.AuthResponseHeaders, h)
		}
	}
	re, err := regexp.Compile(fa.AuthResponseHeadersRegex)
	if err != nil {
		t.Fatalf("authResponseHeadersRegex: %v", err)
	}
	if !re.MatchString("X-Keygate-Foo") || re.MatchString("Authorization") {
		t.Errorf("authResponseHeadersRegex %q must match every X-Keygate-* and nothing else", fa.AuthResponseHeadersRegex)
	}
	strip := doc.HTTP.Middlewares[r.Middlewares[1]].Headers
	if strip == nil {
		t.Fatalf("second middleware %q is not a headers middleware", r.Middlewares[1])
	}
	if v, ok := strip.CustomRequestHeaders["Authorization"]; !ok || v != "" {
		t.Errorf("second middleware %q must remove Authorization", r.Middlewares[1])
	}
}
