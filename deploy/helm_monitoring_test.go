package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// prometheusRule is the Prometheus Operator's PrometheusRule, as much of
// it as the chart sets; a field outside it fails the decoding.
type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

// ruleGroups is a Prometheus rule file.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Record      string            `json:"record,omitempty"`
			Alert       string            `json:"alert,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

// chartCopies are the chart's copies of the observability files: Helm
// reads only files inside the chart.
var chartCopies = map[string]string{
	filepath.Join("helm", "keygate", "files", "keygate.json"):       dashboardFile,
	filepath.Join("helm", "keygate", "files", "keygate-rules.yaml"): rulesFile,
}

// TestChartCopies: the chart installs the same dashboard and rules as
// deploy/grafana and deploy/prometheus hold.
func TestChartCopies(t *testing.T) {
	for cp, orig := range chartCopies {
		a, err := os.ReadFile(cp)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(orig)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s: copy it over (cp %s %s)", cp, orig, orig, cp)
		}
	}
}

// checkMonitoring checks a render's dashboard ConfigMap and PrometheusRule:
// both there when on, neither when off, each carrying the file it installs.
func checkMonitoring(t *testing.T, objs []object, on bool) {
	t.Helper()
	var dashboards []*corev1.ConfigMap
	for _, cm := range find[*corev1.ConfigMap](objs) {
		if cm.Labels["grafana_dashboard"] != "" {
			dashboards = append(dashboards, cm)
		}
	}
	rules := find[*prometheusRule](objs)
	if !on {
		if len(dashboards)+len(rules) > 0 {
			t.Errorf("%d dashboard ConfigMaps and %d PrometheusRules with monitoring off", len(dashboards), len(rules))
		}
		return
	}
	if len(dashboards) != 1 || len(rules) != 1 {
		t.Fatalf("%d dashboard ConfigMaps and %d PrometheusRules, want one of each", len(dashboards), len(rules))
	}
	cm := dashboards[0]
	if cm.Labels["grafana_dashboard"] != "1" || cm.Namespace != "monitoring" {
		t.Errorf("dashboard ConfigMap labels %v namespace %q, want grafana_dashboard \"1\" in monitoring", cm.Labels, cm.Namespace)
	}
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var got, wantJSON any
	if err := json.Unmarshal([]byte(cm.Data["keygate.json"]), &got); err != nil {
		t.Fatalf("dashboard ConfigMap keygate.json: %v", err)
	}
	json.Unmarshal(want, &wantJSON)
	if !reflect.DeepEqual(got, wantJSON) {
		t.Errorf("dashboard ConfigMap keygate.json is not %s", dashboardFile)
	}

	// Tracing: extraEnv reaches the keygate container.
	found := false
	for _, d := range find[*appsv1.Deployment](objs) {
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				found = found || c.Name == "keygate" && e.Name == "OTEL_EXPORTER_OTLP_ENDPOINT" && e.Value == "http://otel-collector:4317"
			}
		}
	}
	if !found {
		t.Error("extraEnv's OTEL_EXPORTER_OTLP_ENDPOINT is not in the keygate container's environment")
	}

	pr := rules[0]
	if pr.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PrometheusRule labels %v: the extra label is missing", pr.Labels)
	}
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var file ruleGroups
	if err := yaml.UnmarshalStrict(data, &file); err != nil {
		t.Fatal(err)
	}
	if len(file.Groups) == 0 || !reflect.DeepEqual(pr.Spec, file) {
		t.Errorf("PrometheusRule spec is not %s", rulesFile)
	}
}
