package envoy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/policy"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/keygate/keygate/deploy"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// What the server serves, as the Envoy config must name it. Each constant
// is checked against the code that defines it by TestServerContract.
const (
	// grpcPort is Keygate's default gRPC port (config: grpc_addr ":9191"):
	// the keygate cluster's endpoint port.
	grpcPort = deploy.GRPCPort
	// envHeader is the header Keygate sets to test|live (config:
	// headers.env); the staging routes match on it.
	envHeader = "x-keygate-env"
	// extScopes and extOrgRequired are the context extensions Keygate reads
	// (policy.ExtScopes, policy.ExtOrgRequired).
	extScopes      = "keygate.scopes"
	extOrgRequired = "keygate.org_required"
	// metadataNamespace is where Envoy files the dynamic metadata of a
	// CheckResponse: the ext_authz filter's name.
	metadataNamespace = "envoy.filters.http.ext_authz"
)

// metadataFields are the dynamic metadata fields Keygate sets on an allowed
// request (extauthz.Server.metadata), each printed by the access log.
var metadataFields = []string{"key_id", "tenant", "org", "env"}

const extAuthzFilter = "envoy.filters.http.ext_authz"

// typedConfigs are the only messages an Any in these files may hold: every
// typed_config the bootstrap uses. Another @type, even a real Envoy one,
// fails the decode until it is added here (and its package imported).
var typedConfigs = []proto.Message{
	&hcmv3.HttpConnectionManager{},
	&extauthzv3.ExtAuthz{},
	&extauthzv3.ExtAuthzPerRoute{},
	&routerv3.Router{},
	&streamv3.StdoutAccessLog{},
	&filev3.FileAccessLog{},
	&httpv3.HttpProtocolOptions{},
}

// resolver knows exactly typedConfigs.
func resolver(t testing.TB) *protoregistry.Types {
	t.Helper()
	var r protoregistry.Types
	for _, m := range typedConfigs {
		if err := r.RegisterMessage(m.ProtoReflect().Type()); err != nil {
			t.Fatalf("register %T: %v", m, err)
		}
	}
	return &r
}

// decode reads an Envoy bootstrap as Envoy would, but stricter: YAML with a
// duplicate key, an unknown field anywhere (inside typed configs too), an
// @type the resolver does not know, or a value that breaks a
// protoc-gen-validate rule of the Bootstrap or of any typed config inside
// it is an error.
func decode(data []byte, res *protoregistry.Types) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false, Resolver: res}).Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("proto: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("validate: %w", err)
	}
	// PGV checks an Any's type URL at most, never its content: unpack each
	// one and validate what is inside, recursively.
	if err := validateAnys(b.ProtoReflect(), res, "bootstrap"); err != nil {
		return nil, err
	}
	return &b, nil
}

// validateAnys unpacks every Any reachable from m and runs ValidateAll on
// the message inside it.
func validateAnys(m protoreflect.Message, res *protoregistry.Types, at string) error {
	var errs []error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := at + "." + string(fd.Name())
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				errs = append(errs, visit(mv.Message(), res, name+"["+k.String()+"]"))
				return true
			})
		case fd.Message() == nil:
		case fd.IsList():
			for i := range v.List().Len() {
				errs = append(errs, visit(v.List().Get(i).Message(), res, fmt.Sprintf("%s[%d]", name, i)))
			}
		default:
			errs = append(errs, visit(v.Message(), res, name))
		}
		return true
	})
	return errors.Join(errs...)
}

func visit(m protoreflect.Message, res *protoregistry.Types, at string) error {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		return validateAnys(m, res, at)
	}
	inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{Resolver: res})
	if err != nil {
		return fmt.Errorf("%s: %w", at, err)
	}
	if v, ok := inner.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s (%s): validate: %w", at, a.GetTypeUrl(), err)
		}
	}
	return validateAnys(inner.ProtoReflect(), res, at)
}

// yamlFiles lists every YAML file under this directory.
func yamlFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ext := filepath.Ext(p); !d.IsDir() && (ext == ".yaml" || ext == ".yml") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files under envoy/")
	}
	return files
}

func TestEveryYAMLIsAValidBootstrap(t *testing.T) {
	res := resolver(t)
	for _, f := range yamlFiles(t) {
		t.Run(f, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decode(data, res); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDecodeRejects proves the decoder is strict: each case changes one
// line of envoy.yaml and must fail.
func TestDecodeRejects(t *testing.T) {
	data, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res := resolver(t)
	if _, err := decode(data, res); err != nil {
		t.Fatalf("envoy.yaml itself: %v", err)
	}
	tests := []struct {
		name, old, new, want string
	}{
		{
			name: "unknown field in a typed config",
			old:  "failure_mode_allow: false",
			new:  "failure_mode_alow: false",
			want: "failure_mode_alow",
		},
		{
			name: "unknown field in the bootstrap",
			old:  "connect_timeout: 1s",
			new:  "connect_timeot: 1s",
			want: "connect_timeot",
		},
		{
			name: "unknown @type",
			old:  "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
			new:  "type.googleapis.com/envoy.extensions.filters.http.routr.v3.Router",
			want: "routr",
		},
		{
			name: "real Envoy @type not in the allow list",
			old:  "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
			new:  "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
			want: "lua",
		},
		{
			name: "protoc-gen-validate rule of the bootstrap",
			old:  "port_value: 9191",
			new:  "port_value: 91910",
			want: "PortValue",
		},
		{
			name: "protoc-gen-validate rule inside a typed config",
			old:  "stat_prefix: ingress",
			new:  `stat_prefix: ""`,
			want: "StatPrefix",
		},
		{
			name: "duplicate key",
			old:  "failure_mode_allow: false",
			new:  "failure_mode_allow: false\n                      failure_mode_allow: true",
			want: "failure_mode_allow",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := string(data)
			if !strings.Contains(s, tc.old) {
				t.Fatalf("envoy.yaml has no %q to change", tc.old)
			}
			_, err := decode([]byte(strings.Replace(s, tc.old, tc.new, 1)), res)
			if err == nil {
				t.Fatal("decoded without error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			t.Logf("rejected: %v", err)
		})
	}
}

// frontProxy is envoy.yaml with the parts the checks look at unpacked.
type frontProxy struct {
	boot     *bootstrapv3.Bootstrap
	hcm      *hcmv3.HttpConnectionManager
	filters  []*hcmv3.HttpFilter
	extAuthz *extauthzv3.ExtAuthz
	routes   []*routev3.Route
	clusters map[string]*clusterv3.Cluster
	res      *protoregistry.Types
}

func load(t *testing.T) *frontProxy {
	t.Helper()
	data, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := &frontProxy{res: resolver(t), clusters: map[string]*clusterv3.Cluster{}}
	p.boot, err = decode(data, p.res)
	if err != nil {
		t.Fatal(err)
	}
	ls := p.boot.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		t.Fatalf("%d listeners, want 1", len(ls))
	}
	if got := ls[0].GetAddress().GetSocketAddress().GetPortValue(); got != 8080 {
		t.Errorf("listener port %d, want 8080", got)
	}
	var hcms []*hcmv3.HttpConnectionManager
	for _, fc := range ls[0].GetFilterChains() {
		for _, f := range fc.GetFilters() {
			var h hcmv3.HttpConnectionManager
			if p.unpack(t, f.GetTypedConfig(), &h) {
				hcms = append(hcms, &h)
			}
		}
	}
	if len(hcms) != 1 {
		t.Fatalf("%d HTTP connection managers, want 1", len(hcms))
	}
	p.hcm = hcms[0]
	p.filters = p.hcm.GetHttpFilters()
	for _, f := range p.filters {
		var ea extauthzv3.ExtAuthz
		if p.unpack(t, f.GetTypedConfig(), &ea) {
			if p.extAuthz != nil {
				t.Fatal("two ext_authz filters")
			}
			if f.GetName() != extAuthzFilter {
				t.Errorf("ext_authz filter named %q, want %q: per-route configs and the metadata namespace use the name", f.GetName(), extAuthzFilter)
			}
			p.extAuthz = &ea
		}
	}
	if p.extAuthz == nil {
		t.Fatal("no ext_authz filter")
	}
	vhs := p.hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 1 {
		t.Fatalf("%d virtual hosts, want 1", len(vhs))
	}
	p.routes = vhs[0].GetRoutes()
	for _, c := range p.boot.GetStaticResources().GetClusters() {
		p.clusters[c.GetName()] = c
	}
	return p
}

// unpack fills m from a if a holds m's type, and reports whether it did.
func (p *frontProxy) unpack(t *testing.T, a *anypb.Any, m proto.Message) bool {
	t.Helper()
	if a == nil || !a.MessageIs(m) {
		return false
	}
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	return true
}

// perRoute returns the route's ext_authz per-route config, nil if none.
func (p *frontProxy) perRoute(t *testing.T, r *routev3.Route) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()[extAuthzFilter]
	if !ok {
		return nil
	}
	var pr extauthzv3.ExtAuthzPerRoute
	if !p.unpack(t, a, &pr) {
		t.Fatalf("route %q: %s per-filter config is %s", r.GetName(), extAuthzFilter, a.GetTypeUrl())
	}
	return &pr
}

func TestExtAuthzFilter(t *testing.T) {
	p := load(t)
	ea := p.extAuthz

	if got := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != "keygate" {
		t.Errorf("ext_authz grpc_service.envoy_grpc.cluster_name = %q, want keygate", got)
	}
	if ea.GetHttpService() != nil {
		t.Error("ext_authz uses http_service; the front proxy speaks gRPC to Keygate")
	}
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow is true: requests would pass unchecked when Keygate is down")
	}
	if got := ea.GetTransportApiVersion().String(); got != "V3" {
		t.Errorf("transport_api_version = %s, want V3", got)
	}
	if !ea.GetClearRouteCache() {
		t.Error("clear_route_cache is false: test keys would never reach the staging routes")
	}
	if got := ea.GetStatusOnError().GetCode().String(); got != "ServiceUnavailable" {
		t.Errorf("status_on_error = %s, want ServiceUnavailable (Keygate's own unavailable status)", got)
	}
	timeout := ea.GetGrpcService().GetTimeout()
	if timeout == nil {
		t.Error("grpc_service.timeout unset")
	} else if d := timeout.AsDuration(); d <= 0 || d > time.Second {
		t.Errorf("grpc_service.timeout = %v, want within (0, 1s]", d)
	}
	if ea.GetWithRequestBody() != nil {
		t.Error("with_request_body set: Keygate reads no body, buffering it only adds latency")
	}

	// The router runs last, ext_authz before it.
	var names []string
	for _, f := range p.filters {
		names = append(names, f.GetName())
	}
	if len(names) == 0 || names[len(names)-1] != "envoy.filters.http.router" {
		t.Errorf("http_filters %v: the router must be last", names)
	}
	if i := slices.Index(names, extAuthzFilter); i < 0 || i != len(names)-2 {
		t.Errorf("http_filters %v: ext_authz must run right before the router", names)
	}
}

func TestKeygateCluster(t *testing.T) {
	p := load(t)
	c, ok := p.clusters["keygate"]
	if !ok {
		t.Fatal("no keygate cluster")
	}
	if got := c.GetType(); got != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("keygate cluster type %s, want STRICT_DNS", got)
	}
	var opts httpv3.HttpProtocolOptions
	a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if !p.unpack(t, a, &opts) {
		t.Fatal("keygate cluster has no envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
	}
	if opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Error("keygate cluster is not HTTP/2 (explicit_http_config.http2_protocol_options): gRPC needs it")
	}
	var ports []uint32
	for _, e := range c.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			ports = append(ports, sa.GetPortValue())
		}
	}
	if len(ports) == 0 {
		t.Fatal("keygate cluster has no endpoints")
	}
	for _, port := range ports {
		if port != grpcPort {
			t.Errorf("keygate endpoint port %d, want Keygate's gRPC port %d", port, grpcPort)
		}
	}
	grpcHC := false
	for _, hc := range c.GetHealthChecks() {
		grpcHC = grpcHC || hc.GetGrpcHealthCheck() != nil
	}
	if !grpcHC {
		t.Error("keygate cluster has no gRPC health check: a replica whose cache is cold would get traffic")
	}
	for _, r := range p.routes {
		if cl := r.GetRoute().GetCluster(); cl != "" {
			if _, ok := p.clusters[cl]; !ok {
				t.Errorf("route %q sends to undefined cluster %q", r.GetName(), cl)
			}
		}
	}
}

// isStaging reports whether r matches only requests Keygate marked as test,
// and returns its match without that header.
func isStaging(r *routev3.Route) (bool, *routev3.RouteMatch) {
	m := proto.Clone(r.GetMatch()).(*routev3.RouteMatch)
	var rest []*routev3.HeaderMatcher
	staging := false
	for _, h := range m.GetHeaders() {
		if h.GetName() == envHeader && h.GetStringMatch().GetExact() == "test" && !h.GetInvertMatch() {
			staging = true
			continue
		}
		rest = append(rest, h)
	}
	m.Headers = rest
	return staging, m
}

// TestStagingRoutes checks the reason for clear_route_cache: each route has
// a twin for test keys that comes first, sends to the staging cluster and is
// checked with the same settings (the check runs with the settings of the
// route picked from the client's own headers, before Keygate replaces
// x-keygate-env).
func TestStagingRoutes(t *testing.T) {
	p := load(t)
	type entry struct {
		i     int
		match *routev3.RouteMatch
	}
	var staging []entry
	for i, r := range p.routes {
		if ok, m := isStaging(r); ok {
			staging = append(staging, entry{i, m})
			if got := r.GetRoute().GetCluster(); got != "staging" {
				t.Errorf("staging route %q sends to %q, want staging", r.GetName(), got)
			}
		}
	}
	if len(staging) == 0 {
		t.Fatalf("no route matches %s: test", envHeader)
	}
	for i, r := range p.routes {
		if ok, _ := isStaging(r); ok || r.GetRoute() == nil {
			continue // staging, or answered by Envoy itself (health)
		}
		if pr := p.perRoute(t, r); pr.GetDisabled() {
			continue
		}
		if got := r.GetRoute().GetCluster(); got == "staging" {
			t.Errorf("route %q sends every key to staging", r.GetName())
		}
		twin := -1
		for _, s := range staging {
			if proto.Equal(s.match, r.GetMatch()) {
				twin = s.i
				break
			}
		}
		if twin < 0 {
			t.Errorf("route %q has no staging twin (%s: test, same match) before it", r.GetName(), envHeader)
			continue
		}
		if twin > i {
			t.Errorf("staging route %q comes after %q: first match wins, test keys would never reach it", p.routes[twin].GetName(), r.GetName())
		}
		if a, b := p.perRoute(t, p.routes[twin]), p.perRoute(t, r); !proto.Equal(a, b) {
			t.Errorf("route %q and its staging twin %q are checked differently: %v vs %v", r.GetName(), p.routes[twin].GetName(), b, a)
		}
	}
	// The default route (prefix /, no other condition) is the last, after its
	// staging twin.
	last := p.routes[len(p.routes)-1]
	if last.GetMatch().GetPrefix() != "/" || len(last.GetMatch().GetHeaders()) != 0 {
		t.Errorf("last route %q is not the default (prefix /)", last.GetName())
	}
}

func TestContextExtensions(t *testing.T) {
	p := load(t)
	scoped, orgRequired, disabled := 0, 0, 0
	for _, r := range p.routes {
		pr := p.perRoute(t, r)
		if pr.GetDisabled() {
			disabled++
			if r.GetDirectResponse() == nil {
				t.Errorf("route %q skips ext_authz but reaches an upstream", r.GetName())
			}
			continue
		}
		for k, v := range pr.GetCheckSettings().GetContextExtensions() {
			switch k {
			case extScopes:
				scoped++
				for s := range strings.SplitSeq(v, ",") {
					if res, act, ok := strings.Cut(s, ":"); !ok || res == "" || act == "" {
						t.Errorf("route %q: %s %q: %q is not resource:action", r.GetName(), k, v, s)
					}
				}
			case extOrgRequired:
				if v != "true" && v != "false" {
					t.Errorf("route %q: %s = %q, want true or false", r.GetName(), k, v)
				}
				if v == "true" {
					orgRequired++
				}
			default:
				t.Errorf("route %q: context extension %q is not one Keygate reads", r.GetName(), k)
			}
		}
	}
	if scoped == 0 {
		t.Errorf("no route sets %s", extScopes)
	}
	if orgRequired == 0 {
		t.Errorf("no route sets %s: true", extOrgRequired)
	}
	if disabled != 1 {
		t.Errorf("%d routes skip ext_authz, want exactly the health route", disabled)
	}
	var health *routev3.Route
	for _, r := range p.routes {
		if r.GetMatch().GetPath() == "/healthz" {
			health = r
		}
	}
	if health == nil || !p.perRoute(t, health).GetDisabled() {
		t.Error("no /healthz route with ext_authz disabled")
	}
}

func TestAccessLog(t *testing.T) {
	p := load(t)
	var logs []*streamv3.StdoutAccessLog
	for _, al := range p.hcm.GetAccessLog() {
		var l streamv3.StdoutAccessLog
		if p.unpack(t, al.GetTypedConfig(), &l) {
			logs = append(logs, &l)
		}
	}
	if len(logs) != 1 {
		t.Fatalf("%d stdout access logs, want 1", len(logs))
	}
	js := logs[0].GetLogFormat().GetJsonFormat()
	if js == nil {
		t.Fatal("access log is not JSON (log_format.json_format)")
	}
	values := map[string]bool{}
	for _, v := range js.GetFields() {
		values[v.GetStringValue()] = true
	}
	want := []string{"%RESPONSE_CODE%", "%REQ(X-REQUEST-ID)%"}
	for _, f := range metadataFields {
		want = append(want, "%DYNAMIC_METADATA("+metadataNamespace+":"+f+")%")
	}
	for _, w := range want {
		if !values[w] {
			t.Errorf("access log does not print %s", w)
		}
	}
}

func TestAdmin(t *testing.T) {
	p := load(t)
	sa := p.boot.GetAdmin().GetAddress().GetSocketAddress()
	if sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 9901 {
		t.Errorf("admin on %s:%d, want 127.0.0.1:9901 (never exposed)", sa.GetAddress(), sa.GetPortValue())
	}
}

// TestServerContract pins the names and port this config shares with the
// server to the values the server's own packages define: the keygate
// cluster's port to config.Default().GRPCAddr, the header the staging
// routes match to the configured env header, and the context extension
// names to the policy package's.
func TestServerContract(t *testing.T) {
	d := config.Default()
	for _, c := range []struct{ name, here, server string }{
		{"keygate cluster port (grpc_addr)", fmt.Sprintf(":%d", grpcPort), d.GRPCAddr},
		{"env header", envHeader, d.Headers.Env},
		{"scopes extension", extScopes, policy.ExtScopes},
		{"org_required extension", extOrgRequired, policy.ExtOrgRequired},
	} {
		if c.here != c.server {
			t.Errorf("%s: envoy.yaml is checked against %q, the server uses %q", c.name, c.here, c.server)
		}
	}
}
