package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/testrun"
	"github.com/keygate/keygate/server"
)

// The observability files: the Prometheus rules and their unit tests,
// the Grafana dashboard.
var (
	rulesFile     = filepath.Join("prometheus", "keygate-rules.yaml")
	rulesTestFile = filepath.Join("prometheus", "keygate-rules.test.yaml")
	dashboardFile = filepath.Join("grafana", "keygate.json")
)

// promInstall is how CI gets promtool and prometheus.
const promInstall = "apt-get install prometheus (Debian)"

// wantAlerts are the alerts the rules must have, each fired by a unit test.
var wantAlerts = []string{
	"KeygateKeyDatabaseDown", "KeygateRedisDown", "KeygateCacheNotReady", "KeygateUnavailableDecisionsRising",
	"KeygateCheckLatencyHigh", "KeygateCacheRefreshLag", "KeygateWebhookBacklog",
}

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(data, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("%s: %v", rulesFile, errs)
	}
	return groups
}

// dashboardExprs returns every PromQL expression of the dashboard, with
// Grafana's variables replaced by what they stand for, and the metrics
// its variable queries (label_values) name.
func dashboardExprs(t *testing.T) (exprs, varMetrics []string) {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "${job}", ".+", "$job", ".+")
	labelValues := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*), *[a-zA-Z_][a-zA-Z0-9_]*\)$`)
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				switch s, isString := c.(string); {
				case k == "expr" && isString:
					e := vars.Replace(s)
					if strings.Contains(e, "$") {
						t.Errorf("%s.expr %q: a Grafana variable this test does not know", path, s)
					}
					exprs = append(exprs, e)
				case k == "definition" && isString:
					m := labelValues.FindStringSubmatch(s)
					if m == nil {
						t.Errorf("%s.definition %q: not label_values(metric, label)", path, s)
						continue
					}
					varMetrics = append(varMetrics, m[1])
				default:
					walk(c, path+"."+k)
				}
			}
		case []any:
			for i, c := range v {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(dash, "dashboard")
	return exprs, varMetrics
}

// metricNames parses expr and returns the metric names it selects; a
// selector without a literal name is an error.
func metricNames(expr string) ([]string, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	var names []string
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				bad = fmt.Errorf("selector %s names no metric", vs)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names, bad
}

// TestPromQLNamesExportedMetrics parses every expression of the rules and
// the dashboard and checks each metric it names is one a running Keygate
// exports (or a series the rules record).
func TestPromQLNamesExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t, "http://"+startKeygate(t))
	groups := loadRules(t)
	known := maps.Clone(exported)
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				known[r.Record] = true
			} else {
				alerts = append(alerts, r.Alert)
			}
		}
	}
	check := func(where, expr string) []string {
		names, err := metricNames(expr)
		if err != nil {
			t.Errorf("%s: %q: %v", where, expr, err)
		}
		for _, n := range names {
			if !known[n] {
				t.Errorf("%s: %q names %s, which Keygate does not export", where, expr, n)
			}
		}
		return names
	}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			check(rulesFile+" "+r.Record+r.Alert, r.Expr)
			n++
		}
	}
	exprs, varMetrics := dashboardExprs(t)
	used := map[string]bool{}
	for _, e := range exprs {
		for _, name := range check(dashboardFile, e) {
			used[name] = true
		}
	}
	for _, m := range varMetrics {
		if !known[m] {
			t.Errorf("%s: a variable's label_values names %s, which Keygate does not export", dashboardFile, m)
		}
	}
	if n < 10 || len(exprs) < 20 {
		t.Fatalf("%d rules, %d dashboard expressions: the files were not read", n, len(exprs))
	}
	// What the dashboard must show: decisions, latency, the cache, the
	// key database and Redis, local denials, webhooks.
	for _, m := range []string{
		"keygate_decisions_total", "keygate_check_duration_seconds_bucket", "keygate_cache_hits_total", "keygate_cache_misses_total",
		"keygate_cache_refresh_lag_seconds", "keygate_database_up", "keygate_redis_up", "keygate_database_errors_total",
		"keygate_redis_errors_total", "keygate_ratelimit_local_denials_total", "keygate_webhook_deliveries_total",
		"keygate_webhook_oldest_pending_seconds",
	} {
		if !used[m] {
			t.Errorf("%s shows nothing of %s", dashboardFile, m)
		}
	}
	slices.Sort(alerts)
	want := slices.Sorted(slices.Values(wantAlerts))
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts %v, want %v", alerts, want)
	}
}

// TestMetricNamesRejected proves the name check can fail.
func TestMetricNamesRejected(t *testing.T) {
	for _, expr := range []string{`rate(keygate_decisions_total[5m]`, `{job="keygate"}`, `sum(rate({__name__=~"keygate_.*"}[5m]))`} {
		if _, err := metricNames(expr); err == nil {
			t.Errorf("%q: no error", expr)
		}
	}
	names, err := metricNames(`sum by (code) (rate(keygate_decisions_total{job=~".+"}[5m])) / on () group_left keygate:x`)
	if err != nil || !slices.Equal(names, []string{"keygate_decisions_total", "keygate:x"}) {
		t.Errorf("names %v, %v", names, err)
	}
}

// TestPromtool checks the rules with promtool and runs their unit tests,
// which must fire every alert.
func TestPromtool(t *testing.T) {
	promtool := tool(t, "promtool", promInstall)
	run(t, promtool, "check", "rules", rulesFile)
	run(t, promtool, "test", "rules", rulesTestFile)

	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	data, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yamlv3.Unmarshal(data, &tests); err != nil {
		t.Fatal(err)
	}
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, a := range wantAlerts {
		if !fired[a] {
			t.Errorf("%s: no unit test fires %s", rulesTestFile, a)
		}
	}
}

// exportedMetrics reads a running Keygate's /metrics and returns the
// names of its series: each family's, and a histogram's or summary's
// _bucket, _sum and _count.
func exportedMetrics(t *testing.T, base string) map[string]bool {
	t.Helper()
	resp, err := http.Get(base + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		switch f[3] {
		case "histogram":
			names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
		case "summary":
			names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !names["keygate_decisions_total"] {
		t.Fatalf("%s%s names no keygate_decisions_total: not Keygate's metrics (%d names)", base, MetricsPath, len(names))
	}
	return names
}

// startKeygate runs a Keygate server (server.New, as `keygate serve`)
// over a SQLite file on loopback ports until the test ends, and returns
// its HTTP address.
func startKeygate(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Database.URL = "sqlite:" + filepath.Join(t.TempDir(), "keygate.db")
	cfg.Admin.Token = "admin-token-for-tests"
	cfg.DefaultRoute = &config.Route{Scopes: []string{}}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	testrun.Start(t, srv, 30*time.Second)
	_, ha := srv.Addrs()
	return ha.String()
}
