package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/config"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// helmKubeVersion is the Kubernetes version `helm template` renders for
// (the chart needs ≥ 1.30: preStop sleep, matchLabelKeys).
const helmKubeVersion = "1.33.0"

// object is one decoded manifest.
type object struct {
	source string // file, or render, and document index
	meta   metav1.TypeMeta
	obj    any
}

func (o object) name() string {
	if m, ok := o.obj.(metav1.Object); ok {
		return o.meta.Kind + "/" + m.GetName()
	}
	if e, ok := o.obj.(*istioObject); ok {
		return o.meta.Kind + "/" + e.Metadata.Name
	}
	return o.meta.Kind
}

// kinds are the objects the manifests may contain, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/Namespace":                                  func() any { return &corev1.Namespace{} },
	"v1/ServiceAccount":                             func() any { return &corev1.ServiceAccount{} },
	"v1/ConfigMap":                                  func() any { return &corev1.ConfigMap{} },
	"v1/Service":                                    func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                            func() any { return &appsv1.Deployment{} },
	"autoscaling/v2/HorizontalPodAutoscaler":        func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":                 func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":            func() any { return &networkingv1.NetworkPolicy{} },
	"security.istio.io/v1/AuthorizationPolicy":      func() any { return &istioObject{spec: &securityv1beta1.AuthorizationPolicy{}} },
	"install.istio.io/v1alpha1/IstioOperator":       func() any { return &istioObject{spec: &istioOperatorSpec{}} },
	"kustomize.config.k8s.io/v1beta1/Kustomization": func() any { return &kustomization{} },
	"monitoring.coreos.com/v1/PrometheusRule":       func() any { return &prometheusRule{} },
}

// istioObject is an Istio custom resource: Kubernetes metadata around a
// spec that is one of Istio's API protos, decoded with protojson (unknown
// fields fail) rather than encoding/json.
type istioObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            json.RawMessage   `json:"spec"`
	spec            any
}

// istioOperatorSpec is the part of an IstioOperator these files set: the
// mesh config, decoded as Istio's MeshConfig proto.
type istioOperatorSpec struct {
	MeshConfig json.RawMessage `json:"meshConfig"`
	mesh       meshv1alpha1.MeshConfig
}

// kustomization is the part of kustomize's Kustomization these files use;
// a field outside it fails the test (add it here when you use it).
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Namespace       string `json:"namespace,omitempty"`
	Labels          []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels,omitempty"`
	Resources          []string `json:"resources,omitempty"`
	ConfigMapGenerator []struct {
		Name     string   `json:"name"`
		Behavior string   `json:"behavior,omitempty"`
		Files    []string `json:"files"`
	} `json:"configMapGenerator,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
	Patches []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
}

// chartMetadata is the part of Chart.yaml the chart uses.
type chartMetadata struct {
	APIVersion  string   `json:"apiVersion"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion"`
	KubeVersion string   `json:"kubeVersion"`
	Home        string   `json:"home"`
	Keywords    []string `json:"keywords"`
}

// strict decodes one YAML document into v: duplicate keys and unknown
// fields fail.
func strict(doc []byte, v any) error {
	return yaml.UnmarshalStrict(doc, v)
}

// decodeObject decodes one manifest into the API type its apiVersion and
// kind name.
func decodeObject(doc []byte, source string) (object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, fmt.Errorf("%s: %w", source, err)
	}
	mk, ok := kinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return object{}, fmt.Errorf("%s: unknown apiVersion/kind %q/%q", source, tm.APIVersion, tm.Kind)
	}
	o := object{source: source, meta: tm, obj: mk()}
	if err := strict(doc, o.obj); err != nil {
		return object{}, fmt.Errorf("%s (%s): %w", source, tm.Kind, err)
	}
	if e, ok := o.obj.(*istioObject); ok {
		if err := e.decodeSpec(); err != nil {
			return object{}, fmt.Errorf("%s (%s): %w", source, tm.Kind, err)
		}
	}
	return o, nil
}

var strictProto = protojson.UnmarshalOptions{DiscardUnknown: false}

func (e *istioObject) decodeSpec() error {
	if len(e.Spec) == 0 {
		return errors.New("no spec")
	}
	switch s := e.spec.(type) {
	case proto.Message:
		return strictProto.Unmarshal(e.Spec, s)
	case *istioOperatorSpec:
		d := json.NewDecoder(bytes.NewReader(e.Spec))
		d.DisallowUnknownFields()
		if err := d.Decode(s); err != nil {
			return fmt.Errorf("spec: %w", err)
		}
		if err := strictProto.Unmarshal(s.MeshConfig, &s.mesh); err != nil {
			return fmt.Errorf("spec.meshConfig: %w", err)
		}
		return nil
	}
	return fmt.Errorf("no decoder for %T", e.spec)
}

// documents splits a multi-document YAML stream, dropping empty documents.
func documents(t *testing.T, data []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if js, err := yaml.YAMLToJSON(doc); err == nil && string(js) != "null" {
			docs = append(docs, doc)
		}
	}
}

func decodeAll(t *testing.T, data []byte, source string) []object {
	t.Helper()
	var objs []object
	for i, doc := range documents(t, data) {
		o, err := decodeObject(doc, fmt.Sprintf("%s#%d", source, i))
		if err != nil {
			t.Error(err)
			continue
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 {
		t.Errorf("%s: no objects", source)
	}
	return objs
}

// TestEveryFile decodes every YAML file under deploy/ strictly, by what it
// is: a Keygate config file, a Chart.yaml, or Kubernetes/Istio objects.
func TestEveryFile(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch p {
			case "profiles":
				// Keygate config profiles, not manifests: owned by the
				// config package and loaded by cmd/keygate's profile tests.
				return fs.SkipDir
			case filepath.Join("helm", "keygate", "templates"):
				return fs.SkipDir // templates: checked rendered, below
			case "prometheus", filepath.Join("helm", "keygate", "files"):
				// Prometheus rules and their copies in the chart: checked by
				// promtool and observability_test.go.
				return fs.SkipDir
			}
			return nil
		}
		if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		n++
		t.Run(p, func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			switch base := filepath.Base(p); {
			case base == "keygate.yaml":
				if err := loadKeygateConfig(data); err != nil {
					t.Fatal(err)
				}
			case p == filepath.Join("helm", "keygate", "Chart.yaml"):
				var c chartMetadata
				if err := strict(data, &c); err != nil {
					t.Fatal(err)
				}
			case p == filepath.Join("helm", "keygate", "values.yaml"):
				var v struct {
					Config json.RawMessage `json:"config"`
				}
				if err := yaml.Unmarshal(data, &v); err != nil {
					t.Fatal(err)
				}
				if err := loadKeygateConfig(v.Config); err != nil {
					t.Fatalf("values.yaml config: %v", err)
				}
			default:
				decodeAll(t, data, p)
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d YAML files found under deploy/", n)
	}
}

// TestDecodeRejects proves the decoding is strict.
func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, file, old, new, want string
	}{
		{"unknown field in a Deployment", "kustomize/base/deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystm: true", "readOnlyRootFilesystm"},
		{"wrong type", "kustomize/base/hpa.yaml", "minReplicas: 2", "minReplicas: two", "minReplicas"},
		{"unknown kind", "kustomize/base/pdb.yaml", "kind: PodDisruptionBudget", "kind: PodDisruptionBudgt", "PodDisruptionBudgt"},
		{"duplicate key", "kustomize/base/pdb.yaml", "maxUnavailable: 1", "maxUnavailable: 1\n  maxUnavailable: 2", "maxUnavailable"},
		{"unknown field in an Istio spec", "istio/authorization-policy.yaml", "action: CUSTOM", "action: CUSTOM\n  actoin: CUSTOM", "actoin"},
		{"bad enum in an Istio spec", "istio/authorization-policy.yaml", "action: CUSTOM", "action: CUSTOMER", "CUSTOMER"},
		{"unknown field in the mesh config", "istio/mesh-config.yaml", "failOpen: false", "failOpen: false\n          failOpn: false", "failOpn"},
		{"unknown field in a Kustomization", "kustomize/base/kustomization.yaml", "namespace: keygate", "namespace: keygate\nnamespaces: [keygate]", "namespaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte(tc.old)) {
				t.Fatalf("%s has no %q to change", tc.file, tc.old)
			}
			for i, doc := range documents(t, bytes.Replace(data, []byte(tc.old), []byte(tc.new), 1)) {
				_, err = decodeObject(doc, fmt.Sprintf("%s#%d", tc.file, i))
				if err != nil {
					break
				}
			}
			if err == nil {
				t.Fatal("decoded without error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			t.Logf("rejected: %v", err)
		})
	}
	t.Run("unknown field in keygate.yaml", func(t *testing.T) {
		err := loadKeygateConfig([]byte("grpc_addr: \":9191\"\ncache: {max_keys: 10, negative_tl: 30s}\n"))
		if err == nil || !strings.Contains(err.Error(), "negative_tl") {
			t.Fatalf("err = %v, want one naming negative_tl", err)
		}
	})
	t.Run("bad duration in keygate.yaml", func(t *testing.T) {
		err := loadKeygateConfig([]byte("roll: {grace: 24}\n"))
		if err == nil {
			t.Fatal("a duration without a unit decoded")
		}
	})
}

// tool finds a command on PATH or in GOPATH/bin (where `go install` puts
// it); the test fails, not skips, without it.
func tool(t *testing.T, name, install string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("needs " + name + ": -short leaves out the tests that need services or tools; make test runs them")
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range filepath.SplitList(build.Default.GOPATH) {
		if p := filepath.Join(dir, "bin", name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s not found on PATH or in GOPATH/bin; install it: %s", name, install)
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// helmInstall is how CI gets helm (the chart's tests need the binary).
const helmInstall = "go install helm.sh/helm/v3/cmd/helm@v3.22.0"

// defaultPorts are the container ports, by name, of a deployment that
// keeps Keygate's default addresses.
var defaultPorts = map[string]int32{"grpc": GRPCPort, "http": HTTPPort, "portal": PortalPort}

// oidcSecretEnv is the variable that overrides console.oidc.client_secret.
const oidcSecretEnv = "KEYGATE_CONSOLE_OIDC_CLIENT_SECRET"

func TestKustomize(t *testing.T) {
	kubectl := tool(t, "kubectl", "apt-get install kubectl (Debian), or any kubectl ≥ 1.27 (kustomize built in)")
	for _, tc := range []struct {
		dir       string
		publicURL string
	}{
		{"kustomize/base", "http://localhost:9092"},
		{"kustomize/overlays/example", "https://keys.example.com"},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			objs := decodeAll(t, run(t, kubectl, "kustomize", tc.dir), "kubectl kustomize "+tc.dir)
			checkWorkload(t, objs, workload{migrate: true, ports: defaultPorts, publicURL: tc.publicURL})
		})
	}
}

func TestHelm(t *testing.T) {
	helm := tool(t, "helm", helmInstall)
	if v := string(run(t, helm, "version", "--short")); !strings.HasPrefix(v, "v3.") {
		t.Fatalf("helm %s: the chart is apiVersion v2, checked with helm 3", strings.TrimSpace(v))
	}
	run(t, helm, "lint", "--strict", "--kube-version", helmKubeVersion, "helm/keygate")
	tests := []struct {
		name string
		set  []string
		want workload
	}{
		{name: "defaults", want: workload{migrate: true, ports: defaultPorts, publicURL: "http://localhost:9092"}},
		{name: "no autoscaling, no migrations, Istio policy", set: []string{
			"autoscaling.enabled=false", "migrate.enabled=false", "istio.authorizationPolicy.enabled=true",
			"podDisruptionBudget.enabled=false", "networkPolicy.enabled=false", "service.headless=false",
		}, want: workload{ports: defaultPorts}},
		{name: "other ports", set: []string{"ports.grpc=19191", "ports.http=19090", "ports.portal=19092",
			"config.portal.public_url=https://keys.example.com"},
			want: workload{migrate: true, ports: map[string]int32{"grpc": 19191, "http": 19090, "portal": 19092},
				publicURL: "https://keys.example.com"}},
		{name: "monitoring", set: []string{"monitoring.prometheusRule.enabled=true",
			"monitoring.grafanaDashboard.enabled=true", "monitoring.grafanaDashboard.namespace=monitoring",
			"monitoring.prometheusRule.labels.release=kube-prometheus-stack",
			"extraEnv[0].name=OTEL_EXPORTER_OTLP_ENDPOINT", "extraEnv[0].value=http://otel-collector:4317"},
			want: workload{migrate: true, ports: defaultPorts}},
		{name: "console single sign-on, portal closed", set: []string{
			"secret.keys.consoleOIDCClientSecret=oidc-client-secret",
			"config.console.oidc.issuer=https://login.example.com/realms/ops", "config.console.oidc.client_id=keygate",
			"config.console.oidc.roles.admin={keygate-admins}", "networkPolicy.portalFrom=null"},
			want: workload{migrate: true, ports: defaultPorts, oidcSecretKey: "oidc-client-secret", portalClosed: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "keygate", "helm/keygate", "--namespace", "keygate", "--kube-version", helmKubeVersion}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			objs := decodeAll(t, run(t, helm, args...), "helm template ("+tc.name+")")
			checkWorkload(t, objs, tc.want)
			if slices.Contains(tc.set, "istio.authorizationPolicy.enabled=true") {
				checkAuthorizationPolicy(t, objs, "keygate")
			}
			checkMonitoring(t, objs, slices.Contains(tc.set, "monitoring.prometheusRule.enabled=true"))
		})
	}
}

// TestHelmNotes checks what the chart tells the installer: the Secret's
// keys (the OIDC client secret's when read) and where each listener is,
// the portal with the public URL users reach it at. `helm template` leaves
// NOTES.txt out, so a copy of the chart renders it into a ConfigMap.
func TestHelmNotes(t *testing.T) {
	helm := tool(t, "helm", helmInstall)
	chart := filepath.Join(t.TempDir(), "keygate")
	if err := os.CopyFS(chart, os.DirFS(filepath.Join("helm", "keygate"))); err != nil {
		t.Fatal(err)
	}
	notes, err := os.ReadFile(filepath.Join(chart, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(chart, "files", "NOTES.txt"), notes, 0o644); err != nil {
		t.Fatal(err)
	}
	render := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata:\n  NOTES.txt: {{ tpl (.Files.Get \"files/NOTES.txt\") . | quote }}\n"
	if err := os.WriteFile(filepath.Join(chart, "templates", "notes-test.yaml"), []byte(render), 0o644); err != nil {
		t.Fatal(err)
	}
	host := "keygate.keygate.svc.cluster.local"
	for _, tc := range []struct {
		name string
		set  []string
		want []string // lines of the notes
	}{
		{name: "defaults", want: []string{
			`It reads the Secret "keygate-secrets" (keys database-url, redis-url, and optionally admin-token, database-pepper); pods wait for it.`,
			"ext_authz (gRPC): " + host + ":9191",
			"Health, metrics, admin API, console: port 9090 (/healthz, /readyz, /metrics, /admin/v1/, /console/)",
			"API-keys portal: port 9092 (/portal/), for users at http://localhost:9092: route your ingress or gateway there.",
		}},
		{name: "other ports, public URL, OIDC secret", set: []string{"ports.grpc=19191", "ports.http=19090", "ports.portal=19092",
			"config.portal.public_url=https://keys.example.com", "secret.keys.consoleOIDCClientSecret=oidc-client-secret"}, want: []string{
			`It reads the Secret "keygate-secrets" (keys database-url, redis-url, oidc-client-secret, and optionally admin-token, database-pepper); pods wait for it.`,
			"ext_authz (gRPC): " + host + ":19191",
			"Health, metrics, admin API, console: port 19090 (/healthz, /readyz, /metrics, /admin/v1/, /console/)",
			"API-keys portal: port 19092 (/portal/), for users at https://keys.example.com: route your ingress or gateway there.",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "keygate", chart, "--namespace", "keygate", "--kube-version", helmKubeVersion,
				"--show-only", "templates/notes-test.yaml"}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			cms := find[*corev1.ConfigMap](decodeAll(t, run(t, helm, args...), "helm template NOTES ("+tc.name+")"))
			if len(cms) != 1 {
				t.Fatalf("%d ConfigMaps, want the notes", len(cms))
			}
			got := strings.Split(cms[0].Data["NOTES.txt"], "\n")
			for _, line := range tc.want {
				if !slices.Contains(got, line) {
					t.Errorf("NOTES.txt has no line\n\t%s\nit reads:\n%s", line, cms[0].Data["NOTES.txt"])
				}
			}
		})
	}
}

// find returns the objects of type T.
func find[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// workload is what one render is expected to hold beyond what every render
// must.
type workload struct {
	migrate bool
	// ports are the container ports by name (grpc, http, portal), each of
	// which a Service must expose under the same name and number.
	ports map[string]int32
	// publicURL is the mounted config's portal.public_url, when not "".
	publicURL string
	// oidcSecretKey is the Secret key the keygate container reads
	// KEYGATE_CONSOLE_OIDC_CLIENT_SECRET from; "": no container reads it.
	oidcSecretKey string
	// portalClosed: a NetworkPolicy, if any, lets nobody reach the portal
	// port (its portalFrom is empty) rather than the ingress namespaces.
	portalClosed bool
}

// checkWorkload checks what a rendered set of objects promises: the probes
// and ports the server serves, a restricted pod, secrets from a Secret, and
// Services, autoscaler, budget and network policy that all select the pods.
func checkWorkload(t *testing.T, objs []object, want workload) {
	t.Helper()
	deps := find[*appsv1.Deployment](objs)
	if len(deps) != 1 {
		t.Fatalf("%d Deployments, want 1", len(deps))
	}
	dep := deps[0]
	pod := dep.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v (%v)", dep.Spec.Selector, pod.Labels, err)
	}

	var main *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "keygate" {
			main = &pod.Spec.Containers[i]
		}
	}
	if main == nil {
		t.Fatal("no container named keygate")
	}
	ports := map[string]int32{}
	for _, p := range main.Ports {
		ports[p.Name] = p.ContainerPort
	}
	grpcPort, httpPort, portalPort := ports["grpc"], ports["http"], ports["portal"]
	if grpcPort == 0 || httpPort == 0 || portalPort == 0 {
		t.Fatalf("container ports %v: want ones named grpc, http and portal", ports)
	}
	if len(want.ports) == 0 {
		t.Fatal("the test case names no ports")
	}
	for name, n := range want.ports {
		if ports[name] != n {
			t.Errorf("container port %s is %d, want %d (container ports %v)", name, ports[name], n, ports)
		}
	}
	for _, p := range main.Ports {
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			t.Errorf("container port %s protocol %s, want TCP", p.Name, p.Protocol)
		}
	}

	// The config the pod mounts: its addresses are the container ports.
	cfg, cfgData := mountedConfig(t, objs, pod.Spec, main)
	if want := fmt.Sprintf(":%d", grpcPort); cfg.GRPCAddr != want && !(cfg.GRPCAddr == "" && grpcPort == GRPCPort) {
		t.Errorf("config grpc_addr %q, container port grpc %d", cfg.GRPCAddr, grpcPort)
	}
	if want := fmt.Sprintf(":%d", httpPort); cfg.HTTPAddr != want && !(cfg.HTTPAddr == "" && httpPort == HTTPPort) {
		t.Errorf("config http_addr %q, container port http %d", cfg.HTTPAddr, httpPort)
	}
	if want := fmt.Sprintf(":%d", portalPort); cfg.Portal.Addr != want && !(cfg.Portal.Addr == "" && portalPort == PortalPort) {
		t.Errorf("config portal.addr %q, container port portal %d", cfg.Portal.Addr, portalPort)
	}
	if cfg.GRPCAddr == "" && cfg.HTTPAddr == "" && cfg.Portal.Addr == "" && (grpcPort != GRPCPort || httpPort != HTTPPort || portalPort != PortalPort) {
		t.Errorf("container ports %d/%d/%d are not Keygate's defaults %d/%d/%d", grpcPort, httpPort, portalPort, GRPCPort, HTTPPort, PortalPort)
	}
	if want.publicURL != "" && cfg.Portal.PublicURL != want.publicURL {
		t.Errorf("config portal.public_url %q, want %q", cfg.Portal.PublicURL, want.publicURL)
	}

	// Probes: exactly the server's paths, on the HTTP port.
	probes := []struct {
		name  string
		probe *corev1.Probe
		paths []string
	}{
		{"liveness", main.LivenessProbe, []string{LivenessPath}},
		{"readiness", main.ReadinessProbe, []string{ReadinessPath}},
		{"startup", main.StartupProbe, []string{LivenessPath, ReadinessPath}},
	}
	for _, p := range probes {
		if p.probe == nil {
			if p.name != "startup" {
				t.Errorf("no %s probe", p.name)
			}
			continue
		}
		g := p.probe.HTTPGet
		if g == nil {
			t.Errorf("%s probe is not an HTTP GET", p.name)
			continue
		}
		if !slices.Contains(p.paths, g.Path) {
			t.Errorf("%s probe path %q, want %q", p.name, g.Path, p.paths)
		}
		if got := resolvePort(g.Port, ports); got != httpPort {
			t.Errorf("%s probe port %s (%d), want the http port %d", p.name, g.Port.String(), got, httpPort)
		}
	}
	if a := pod.Annotations; a["prometheus.io/scrape"] == "true" {
		if a["prometheus.io/port"] != strconv.Itoa(int(httpPort)) || a["prometheus.io/path"] != MetricsPath {
			t.Errorf("scrape annotations %v, want port %d path %s", a, httpPort, MetricsPath)
		}
	}

	// Commands: the image's entrypoint, the config from KEYGATE_CONFIG.
	if want := []string{"serve"}; !slices.Equal(main.Args, want) || len(main.Command) != 0 {
		t.Errorf("keygate container command %v args %v, want the image's entrypoint with args %v", main.Command, main.Args, want)
	}
	checkConfigEnv(t, "keygate", main)
	var migrate *corev1.Container
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == "migrate" {
			migrate = &pod.Spec.InitContainers[i]
		}
	}
	if want.migrate {
		if migrate == nil {
			t.Error("no migrate init container")
		} else {
			if want := []string{"migrate"}; !slices.Equal(migrate.Args, want) || len(migrate.Command) != 0 {
				t.Errorf("migrate command %v args %v, want the image's entrypoint with args %v", migrate.Command, migrate.Args, want)
			}
			if migrate.Image != main.Image {
				t.Errorf("migrate image %q, server image %q: migrations must come from the same build", migrate.Image, main.Image)
			}
			checkConfigEnv(t, "migrate", migrate)
			checkSecretEnv(t, "migrate", migrate, "KEYGATE_DATABASE_URL")
		}
	}

	// Secrets from the Secret keygate-secrets, never literals.
	checkSecretEnv(t, "keygate", main, "KEYGATE_DATABASE_URL", "KEYGATE_REDIS_URL", "KEYGATE_ADMIN_TOKEN")
	checkOIDCSecret(t, pod.Spec, main, cfgData, want.oidcSecretKey)

	// Restricted pod security (Pod Security Standards "restricted").
	checkRestricted(t, pod.Spec)

	// Resources.
	for _, c := range append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...) {
		r := c.Resources
		if r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
			t.Errorf("container %s: resources %v, want cpu and memory requests and a memory limit", c.Name, r)
		}
	}

	// Spread.
	if len(pod.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topologySpreadConstraints")
	}
	for _, c := range pod.Spec.TopologySpreadConstraints {
		if s, err := metav1.LabelSelectorAsSelector(c.LabelSelector); err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("topology spread on %s does not select the pods", c.TopologyKey)
		}
	}

	// Services.
	svcs := find[*corev1.Service](objs)
	if len(svcs) == 0 {
		t.Error("no Service")
	}
	// Each named container port is exposed by a Service port of the same
	// name and number that targets it, with the protocol meshes and
	// gateways pick by appProtocol: HTTP/2 for gRPC, HTTP for the portal
	// (what an ingress or gateway routes users to).
	appProtocols := map[string]string{"grpc": "grpc", "http": "http", "portal": "http"}
	served := map[string]bool{}
	for _, s := range svcs {
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) || len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s selector %v does not select the pods", s.Name, s.Spec.Selector)
		}
		for _, p := range s.Spec.Ports {
			target := resolvePort(p.TargetPort, ports)
			if target == 0 {
				t.Errorf("Service %s port %s targets %s, not a container port", s.Name, p.Name, p.TargetPort.String())
			}
			n, named := ports[p.Name]
			if !named {
				t.Errorf("Service %s port %q is named after no container port %v", s.Name, p.Name, ports)
				continue
			}
			if target != n || p.Port != n {
				t.Errorf("Service %s port %s is %d targeting %s (%d), want %d targeting the container port %s",
					s.Name, p.Name, p.Port, p.TargetPort.String(), target, n, p.Name)
				continue
			}
			got := ""
			if p.AppProtocol != nil {
				got = *p.AppProtocol
			}
			if got != appProtocols[p.Name] {
				t.Errorf("Service %s port %s: appProtocol %q, want %q", s.Name, p.Name, got, appProtocols[p.Name])
			}
			if s.Spec.ClusterIP != corev1.ClusterIPNone {
				served[p.Name] = true
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want.ports)) {
		if !served[name] {
			t.Errorf("no ClusterIP Service exposes the %s port %d", name, ports[name])
		}
	}

	// Autoscaler, budget, network policy: each optional in Helm, each
	// pointing at these pods when present.
	for _, h := range find[*autoscalingv2.HorizontalPodAutoscaler](objs) {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.Name != dep.Name || ref.APIVersion != "apps/v1" {
			t.Errorf("HPA %s scales %v, want Deployment %s", h.Name, ref, dep.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA %s min %v max %d: want 2 ≤ min ≤ max", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		if dep.Spec.Replicas != nil {
			t.Errorf("Deployment sets replicas while HPA %s owns the count", h.Name)
		}
	}
	for _, p := range find[*policyv1.PodDisruptionBudget](objs) {
		if s, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err != nil || s.Empty() || !s.Matches(podLabels) {
			t.Errorf("PDB %s does not select the pods", p.Name)
		}
	}
	for _, np := range find[*networkingv1.NetworkPolicy](objs) {
		checkNetworkPolicy(t, np, podLabels, grpcPort, httpPort, portalPort, !want.portalClosed)
	}
}

// checkOIDCSecret: with key "", no container reads the console's OIDC
// client secret (the variable alone would stop Keygate from starting);
// otherwise the keygate container, and only it, reads it from the Secret
// by that key, not optionally, and the mounted config plus the variable
// loads with single sign-on on and the secret from the environment.
func checkOIDCSecret(t *testing.T, spec corev1.PodSpec, main *corev1.Container, cfgData []byte, key string) {
	t.Helper()
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		for _, e := range c.Env {
			switch {
			case e.Name != oidcSecretEnv:
			case key == "":
				t.Errorf("container %s reads %s, with no Secret key named for it", c.Name, oidcSecretEnv)
			case c.Name != main.Name:
				t.Errorf("container %s reads %s: only the %s container needs it", c.Name, oidcSecretEnv, main.Name)
			}
		}
	}
	if key == "" {
		return
	}
	if SecretKeys[oidcSecretEnv] != key {
		t.Fatalf("the test case's key %q is not SecretKeys[%s] %q", key, oidcSecretEnv, SecretKeys[oidcSecretEnv])
	}
	checkSecretEnv(t, main.Name, main, oidcSecretEnv)
	for _, e := range main.Env {
		if e.Name == oidcSecretEnv && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if o := e.ValueFrom.SecretKeyRef.Optional; o != nil && *o {
				t.Errorf("%s is optional: a missing key would start Keygate with a client that cannot sign in", oidcSecretEnv)
			}
		}
	}
	const secret = "s3cret-from-the-Secret"
	got, err := loadKeygateConfigEnv(cfgData, map[string]string{oidcSecretEnv: secret})
	if err != nil {
		t.Fatalf("the mounted config with %s set: %v", oidcSecretEnv, err)
	}
	if sso, on := got.ConsoleOIDC(); !on || sso.ClientSecret != secret {
		t.Errorf("with %s set: single sign-on on %v, client secret %q, want on with %q", oidcSecretEnv, on, sso.ClientSecret, secret)
	}
}

// checkConfigEnv: the container reads its config file from KEYGATE_CONFIG,
// the path the ConfigMap is mounted at.
func checkConfigEnv(t *testing.T, container string, c *corev1.Container) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == "KEYGATE_CONFIG" {
			if e.Value != ConfigPath || e.ValueFrom != nil {
				t.Errorf("container %s: KEYGATE_CONFIG=%q, want %q", container, e.Value, ConfigPath)
			}
			return
		}
	}
	t.Errorf("container %s: no KEYGATE_CONFIG (want %q)", container, ConfigPath)
}

// resolvePort turns a named or numbered port into the container port.
func resolvePort(p intstr.IntOrString, ports map[string]int32) int32 {
	if p.Type == intstr.String {
		return ports[p.StrVal]
	}
	for _, n := range ports {
		if n == p.IntVal {
			return n
		}
	}
	return 0
}

func checkSecretEnv(t *testing.T, container string, c *corev1.Container, names ...string) {
	t.Helper()
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, n := range names {
		e, ok := env[n]
		switch {
		case !ok:
			t.Errorf("container %s: no %s", container, n)
		case e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
			t.Errorf("container %s: %s is not read from a Secret", container, n)
		case e.ValueFrom.SecretKeyRef.Name != SecretName || e.ValueFrom.SecretKeyRef.Key != SecretKeys[n]:
			t.Errorf("container %s: %s from Secret %q key %q, want %q key %q", container, n,
				e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key, SecretName, SecretKeys[n])
		}
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "KEYGATE_") && e.Value != "" && (strings.Contains(e.Name, "URL") || strings.Contains(e.Name, "TOKEN") ||
			strings.Contains(e.Name, "PEPPER") || strings.Contains(e.Name, "SECRET")) {
			t.Errorf("container %s: %s has a literal value", container, e.Name)
		}
	}
}

func checkRestricted(t *testing.T, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("pod mounts a service account token; Keygate calls no Kubernetes API")
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		if !nonRoot {
			t.Errorf("container %s: runAsNonRoot not true", c.Name)
		}
		if uid := sc.RunAsUser; (uid != nil && *uid == 0) || (uid == nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
			t.Errorf("container %s: runs as uid 0", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s: readOnlyRootFilesystem not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: allowPrivilegeEscalation not false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s: privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s: capabilities %v, want drop [ALL] and no add", c.Name, sc.Capabilities)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s: seccomp profile %v, want RuntimeDefault", c.Name, seccomp)
		}
	}
}

// checkNetworkPolicy: the policy selects the pods, lets the proxies reach
// gRPC, monitoring HTTP and, when portalOpen, the ingress the portal (and
// nobody the portal otherwise), and lets Keygate reach PostgreSQL, Redis and
// DNS.
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, pod labels.Set, grpcPort, httpPort, portalPort int32, portalOpen bool) {
	t.Helper()
	if s, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector); err != nil || s.Empty() || !s.Matches(pod) {
		t.Errorf("NetworkPolicy %s does not select the pods", np.Name)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("NetworkPolicy %s policyTypes %v, want Ingress and Egress", np.Name, np.Spec.PolicyTypes)
	}
	in := map[int32]bool{}
	for _, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			t.Errorf("NetworkPolicy %s: an ingress rule open to every source", np.Name)
		}
		for _, p := range r.Ports {
			in[p.Port.IntVal] = true
		}
	}
	for _, p := range []int32{grpcPort, httpPort} {
		if !in[p] {
			t.Errorf("NetworkPolicy %s: no ingress to port %d", np.Name, p)
		}
	}
	if in[portalPort] != portalOpen {
		t.Errorf("NetworkPolicy %s: ingress to the portal port %d %v, want %v", np.Name, portalPort, in[portalPort], portalOpen)
	}
	out := map[string]bool{}
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			out[fmt.Sprintf("%d/%s", p.Port.IntVal, proto)] = true
		}
	}
	for _, want := range []string{"5432/TCP", "6379/TCP", "53/UDP", "53/TCP"} {
		if !out[want] {
			t.Errorf("NetworkPolicy %s: no egress to %s", np.Name, want)
		}
	}
}

// mountedConfig finds the ConfigMap mounted at the --config directory,
// decodes its keygate.yaml strictly, and checks it holds no secret. It
// returns the file as written (no defaults filled in) and its text.
func mountedConfig(t *testing.T, objs []object, spec corev1.PodSpec, c *corev1.Container) (config.Config, []byte) {
	t.Helper()
	dir, file := filepath.Split(ConfigPath)
	var volume string
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) == filepath.Clean(dir) {
			volume = m.Name
		}
	}
	var cmName string
	for _, v := range spec.Volumes {
		if v.Name == volume && v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
		}
	}
	if cmName == "" {
		t.Fatalf("no ConfigMap volume mounted at %s", dir)
	}
	for _, cm := range find[*corev1.ConfigMap](objs) {
		if cm.Name != cmName {
			continue
		}
		data, ok := cm.Data[file]
		if !ok {
			t.Fatalf("ConfigMap %s has no %s", cmName, file)
		}
		if err := loadKeygateConfig([]byte(data)); err != nil {
			t.Fatalf("ConfigMap %s: %v", cmName, err)
		}
		// The file as written, without defaults: did it set a secret?
		var cfg config.Config
		_ = yamlv3.Unmarshal([]byte(data), &cfg)
		if cfg.Database.URL != "" || cfg.Database.Pepper != "" || cfg.Redis.URL != "" || cfg.Admin.Token != "" || cfg.Console.OIDC.ClientSecret != "" {
			t.Errorf("ConfigMap %s holds a secret (database.url, database.pepper, redis.url, admin.token or console.oidc.client_secret): they belong in the Secret", cmName)
		}
		return cfg, []byte(data)
	}
	t.Fatalf("ConfigMap %s is mounted but not among the objects", cmName)
	return config.Config{}, nil
}

// TestIstio checks the mesh's extension provider and the policy that uses
// it against each other and against the kustomize base's Service.
func TestIstio(t *testing.T) {
	var objs []object
	for _, f := range []string{"istio/mesh-config.yaml", "istio/authorization-policy.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, decodeAll(t, data, f)...)
	}
	var providers []*meshv1alpha1.MeshConfig_ExtensionProvider
	for _, o := range objs {
		if s, ok := o.obj.(*istioObject).spec.(*istioOperatorSpec); ok {
			providers = append(providers, s.mesh.GetExtensionProviders()...)
		}
	}
	if len(providers) != 1 {
		t.Fatalf("%d extension providers, want 1", len(providers))
	}
	p := providers[0]
	g := p.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatalf("extension provider %q is not envoyExtAuthzGrpc", p.GetName())
	}
	// The Service of the kustomize base, as the mesh names it.
	base, err := os.ReadFile("kustomize/base/service.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var host string
	for _, s := range find[*corev1.Service](decodeAll(t, base, "kustomize/base/service.yaml")) {
		if s.Spec.ClusterIP != corev1.ClusterIPNone {
			host = s.Name + ".keygate.svc.cluster.local"
		}
	}
	if g.GetService() != host {
		t.Errorf("provider service %q, want the base's Service %q", g.GetService(), host)
	}
	if g.GetPort() != GRPCPort {
		t.Errorf("provider port %d, want %d", g.GetPort(), GRPCPort)
	}
	if g.GetFailOpen() {
		t.Error("provider failOpen: requests would pass unchecked when Keygate is down")
	}
	if d := g.GetTimeout().AsDuration(); d <= 0 || d.Seconds() > 1 {
		t.Errorf("provider timeout %v, want within (0, 1s]", d)
	}
	if !g.GetClearRouteCache() {
		t.Error("provider clearRouteCache false: routes could not use x-keygate-env")
	}
	checkAuthorizationPolicy(t, objs, p.GetName())
}

func checkAuthorizationPolicy(t *testing.T, objs []object, provider string) {
	t.Helper()
	n := 0
	for _, o := range objs {
		ap, ok := o.obj.(*istioObject)
		if !ok {
			continue
		}
		spec, ok := ap.spec.(*securityv1beta1.AuthorizationPolicy)
		if !ok {
			continue
		}
		n++
		if spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
			t.Errorf("%s: action %s, want CUSTOM", o.name(), spec.GetAction())
		}
		if got := spec.GetProvider().GetName(); got != provider {
			t.Errorf("%s: provider %q, want the mesh's %q", o.name(), got, provider)
		}
		if len(spec.GetRules()) == 0 {
			t.Errorf("%s: no rules: a CUSTOM policy without rules checks nothing", o.name())
		}
	}
	if n == 0 {
		t.Error("no AuthorizationPolicy")
	}
}

// TestServerContract ties the constants above to the server: the ports to
// config.Default(), and the probe and metrics paths and KEYGATE_CONFIG to
// the routes and variable the server really registers and reads. The
// routes are registered inside Server.Run, so the sources of the server,
// config and command packages are parsed and the string literals passed
// to mux.Handle/HandleFunc and named as environment variables collected.
func TestServerContract(t *testing.T) {
	d := config.Default()
	for _, c := range []struct{ name, here, server string }{
		{"GRPCPort", ":" + strconv.Itoa(GRPCPort), d.GRPCAddr},
		{"HTTPPort", ":" + strconv.Itoa(HTTPPort), d.HTTPAddr},
		{"PortalPort", ":" + strconv.Itoa(PortalPort), d.Portal.Addr},
	} {
		if c.here != c.server {
			t.Errorf("deploy.%s is %q, the server's default is %q", c.name, c.here, c.server)
		}
	}
	// The Secret's variables are ones Keygate reads: a misspelt name would
	// be set and ignored.
	envNames := config.EnvNames()
	for _, name := range slices.Sorted(maps.Keys(SecretKeys)) {
		if !slices.Contains(envNames, name) {
			t.Errorf("deploy.SecretKeys names %s, which Keygate does not read", name)
		}
	}
	if SecretKeys[oidcSecretEnv] == "" {
		t.Errorf("deploy.SecretKeys has no key for %s", oidcSecretEnv)
	}

	routes, literals := serverSource(t, filepath.Join("..", "server"), filepath.Join("..", "config"), filepath.Join("..", "cmd", "keygate"))
	for _, c := range []struct{ name, path string }{
		{"LivenessPath", LivenessPath},
		{"ReadinessPath", ReadinessPath},
		{"MetricsPath", MetricsPath},
	} {
		if !routes["GET "+c.path] {
			t.Errorf("deploy.%s %q: the server registers no \"GET %s\" (it registers %v)", c.name, c.path, c.path, slices.Sorted(maps.Keys(routes)))
		}
	}
	if !literals["KEYGATE_CONFIG"] {
		t.Error("Keygate never names KEYGATE_CONFIG: the manifests pass the config path through it")
	}
}

// serverSource parses the Go files of dir and returns the patterns passed
// to Handle/HandleFunc calls and every string literal.
func serverSource(t *testing.T, dirs ...string) (routes, literals map[string]bool) {
	t.Helper()
	var files []string
	for _, dir := range dirs {
		fs, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(fs) == 0 {
			t.Fatalf("no Go files in %s (%v)", dir, err)
		}
		files = append(files, fs...)
	}
	routes, literals = map[string]bool{}, map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if v, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING {
					literals[v] = true
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") || len(n.Args) == 0 {
					return true
				}
				if lit, ok := n.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if v, err := strconv.Unquote(lit.Value); err == nil {
						routes[v] = true
					}
				}
			}
			return true
		})
	}
	return routes, literals
}
