package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/cache"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keygate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Load("", envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != ":9191" || cfg.HTTPAddr != ":9090" || cfg.Database.URL != "sqlite:keygate.db" || cfg.Redis.URL != "" {
		t.Errorf("defaults differ from the documented contract (docs/design.md): %+v", cfg)
	}
	if cfg.Database.PollInterval != 2*time.Second || cfg.Limits.OnRedisError != "local" || cfg.Organization.Header != "x-organization-id" {
		t.Errorf("defaults differ from the documented contract (docs/design.md): %+v", cfg)
	}
}

func TestExampleFileMatchesDefaults(t *testing.T) {
	cfg, err := Load("../keygate.example.yaml", envOf(nil))
	if err != nil {
		t.Fatalf("the shipped example must load: %v", err)
	}
	def := Default()
	if cfg.GRPCAddr != def.GRPCAddr || cfg.Database != def.Database || cfg.Redis != def.Redis || cfg.Cache != def.Cache ||
		!reflect.DeepEqual(cfg.Headers, def.Headers) || cfg.Auth != def.Auth || cfg.Organization != def.Organization || cfg.Limits != def.Limits {
		t.Errorf("keygate.example.yaml must show the defaults:\n got %+v\nwant %+v", cfg, def)
	}
	if len(cfg.Plans) != len(def.Plans) {
		t.Errorf("example plans %v, defaults %v", cfg.Plans, def.Plans)
	}
	w, dw := cfg.Webhooks, def.Webhooks
	w.Endpoints, dw.Endpoints = nil, nil
	if len(cfg.Webhooks.Endpoints) != 0 || !reflect.DeepEqual(w, dw) || !reflect.DeepEqual(cfg.Events, def.Events) ||
		cfg.SecretScanning != def.SecretScanning || cfg.Portal != def.Portal {
		t.Errorf("keygate.example.yaml must show the events defaults:\n got %+v %+v %+v %+v\nwant %+v %+v %+v %+v",
			cfg.Webhooks, cfg.Events, cfg.SecretScanning, cfg.Portal, def.Webhooks, def.Events, def.SecretScanning, def.Portal)
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg, err := Load("", envOf(map[string]string{
		"KEYGATE_GRPC_ADDR":                     "127.0.0.1:7000",
		"KEYGATE_HTTP_ADDR":                     ":7001",
		"KEYGATE_DATABASE_URL":                  "postgres://u@h/db",
		"KEYGATE_REDIS_URL":                     "redis://127.0.0.1:6379/0",
		"KEYGATE_ADMIN_TOKEN":                   "s3cret",
		"KEYGATE_DATABASE_POLL_INTERVAL":        "500ms",
		"KEYGATE_ORGANIZATION_REQUIRED":         "true",
		"KEYGATE_CACHE_MAX_KEYS":                "42",
		"KEYGATE_CACHE_NEGATIVE_MAX":            "5000",
		"KEYGATE_CACHE_MISS_LOOKUPS_PER_SECOND": "250",
		"KEYGATE_PLANS":                         `{test: [{limit: 5, period: 1m}], live: [{limit: 9, period: 1h}]}`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != "127.0.0.1:7000" || cfg.HTTPAddr != ":7001" || cfg.Database.URL != "postgres://u@h/db" ||
		cfg.Redis.URL != "redis://127.0.0.1:6379/0" || cfg.Admin.Token != "s3cret" || cfg.Database.PollInterval != 500*time.Millisecond ||
		!cfg.Organization.Required || cfg.Cache.MaxKeys != 42 || len(cfg.Plans) != 2 || cfg.Plans["test"][0].Limit != 5 ||
		cfg.Cache.NegativeMax != 5000 || cfg.Cache.MissLookupsPerSecond != 250 {
		t.Errorf("overrides not applied: %+v", cfg)
	}
}

func TestFileThenEnv(t *testing.T) {
	p := writeFile(t, "grpc_addr: ':8000'\nplans:\n  gold: [{limit: 1, period: 1s}]\n  test: [{limit: 2, period: 1m}]\n  live: [{limit: 3, period: 1h}]\n")
	cfg, err := Load(p, envOf(map[string]string{"KEYGATE_GRPC_ADDR": ":8001"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != ":8001" {
		t.Errorf("env must win over the file: %s", cfg.GRPCAddr)
	}
	if _, ok := cfg.Plans["standard"]; ok || len(cfg.Plans) != 3 {
		t.Errorf("plans in the file must replace the defaults, got %v", cfg.Plans)
	}
	if cfg.HTTPAddr != ":9090" {
		t.Errorf("unset fields keep defaults, got %s", cfg.HTTPAddr)
	}
}

func TestLoadErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, file string
		env        map[string]string
		want       string
	}{
		{"unknown top-level field", "grpc_adr: ':1'\n", nil, "keygate.yaml:1: grpc_adr: unknown field; did you mean grpc_addr?"},
		{"unknown nested field", "database:\n  urll: x\n", nil, "keygate.yaml:2: database.urll: unknown field; did you mean url?"},
		{"bad duration", "database:\n  poll_interval: soon\n", nil, "poll_interval"},
		{"zero poll", "database:\n  poll_interval: 0s\n", nil, "database.poll_interval"},
		{"bad addr", "grpc_addr: nope\n", nil, "grpc_addr"},
		{"bad db url", "database:\n  url: mysql://x\n", nil, "database.url"},
		{"bad mode", "limits:\n  on_redis_error: maybe\n", nil, "limits.on_redis_error"},
		{"negative pipeline window", "redis:\n  pipeline_window: -1ms\n", nil, "redis.pipeline_window"},
		{"pipeline window past the timeout", "redis:\n  timeout: 50ms\n  pipeline_window: 40ms\n", nil, "half of redis.timeout"},
		{"zero pipeline limit", "redis:\n  pipeline_limit: 0\n", nil, "redis.pipeline_limit"},
		{"huge pipeline limit", "redis:\n  pipeline_limit: 100000\n", nil, "redis.pipeline_limit"},
		{"bad env", "key_formats: [{prefix: sk_, env: prod}]\n", nil, "key_formats[0].env"},
		{"plan missing for env", "plans:\n  gold: [{limit: 1, period: 1s}]\n", nil, `no plan named "live"`},
		{"bad window", "plans:\n  test: [{limit: 0, period: 1h}]\n  live: [{limit: 1, period: 1h}]\n", nil, "plans.test[0].limit"},
		{"sub-second period", "plans:\n  test: [{limit: 1, period: 10ms}]\n  live: [{limit: 1, period: 1h}]\n", nil, "plans.test[0].period"},
		{"bad header", "headers:\n  key_id: 'x key'\n", nil, "headers.key_id"},
		{"duplicate header", "headers:\n  key_id: x-a\n  tenant: x-a\n", nil, "also used by"},
		{"bad scope form", "scopes:\n  form: scope\n", nil, "scopes.form"},
		{"bad env var duration", "", map[string]string{"KEYGATE_DATABASE_TIMEOUT": "fast"}, "KEYGATE_DATABASE_TIMEOUT"},
		{"bad env var bool", "", map[string]string{"KEYGATE_ORGANIZATION_REQUIRED": "yes please"}, "KEYGATE_ORGANIZATION_REQUIRED"},
		{"not yaml", "{{{", nil, "keygate.yaml"},
		{"two windows of one period", "plans:\n  test: [{limit: 1, period: 1h}, {limit: 2, period: 60m}]\n  live: [{limit: 1, period: 1h}]\n", nil, "plans.test[1].period"},
		{"tls cert without key", "tls:\n  cert_file: /x\n", nil, "cert_file and key_file"},
		{"mtls without ca", "tls:\n  cert_file: /x\n  key_file: /y\n  require_client_cert: true\n", nil, "tls.require_client_cert"},
		{"bad failures", "auth:\n  failures: {limit: -1, period: 1m}\n", nil, "auth.failures"},
		{"bad error shape", "errors:\n  shape: round\n", nil, "errors.shape"},
		{"bad introspection path", "introspection:\n  path: me\n", nil, "introspection.path"},
		{"zero negative_max", "cache:\n  negative_max: 0\n", nil, "cache.negative_max"},
		{"huge negative_max", "cache:\n  negative_max: 20000000\n", nil, "cache.negative_max"},
		{"zero miss budget", "cache:\n  miss_lookups_per_second: 0\n", nil, "cache.miss_lookups_per_second"},
		{"negative miss budget", "", map[string]string{"KEYGATE_CACHE_MISS_LOOKUPS_PER_SECOND": "-5"}, "cache.miss_lookups_per_second"},
		{"bad env var miss budget", "", map[string]string{"KEYGATE_CACHE_MISS_LOOKUPS_PER_SECOND": "lots"}, "KEYGATE_CACHE_MISS_LOOKUPS_PER_SECOND"},
		{"webhook without secret", "webhooks:\n  endpoints: [{url: 'https://h.example/k'}]\n", nil, "webhooks.endpoints[0].secret: required"},
		{"webhook bad secret", "webhooks:\n  endpoints: [{url: 'https://h.example/k', secret: hunter2}]\n", nil, "webhooks.endpoints[0].secret: must start with whsec_"},
		{"webhook bad url", "webhooks:\n  endpoints: [{url: 'ftp://h.example/k', secret_env: S}]\n", nil, "webhooks.endpoints[0].url"},
		{"webhook bad type", "webhooks:\n  endpoints: [{url: 'https://h.example/k', secret_env: S, events: [key.deleted]}]\n", nil, "webhooks.endpoints[0].events[0]"},
		{"webhook misspelt field", "webhooks:\n  endpoints: [{url: 'https://h.example/k', secret_env: S, tenant: [a]}]\n", nil, "webhooks.endpoints[0].tenant: unknown field; did you mean tenants?"},
		{"zero max_age", "webhooks:\n  max_age: 0s\n", nil, "webhooks.max_age"},
		{"huge timeout", "webhooks:\n  timeout: 1h\n", nil, "webhooks.timeout: at most 5m"},
		{"backoff upside down", "webhooks:\n  min_backoff: 1h\n  max_backoff: 1m\n", nil, "webhooks.min_backoff"},
		{"zero concurrency", "webhooks:\n  concurrency: 0\n", nil, "webhooks.concurrency"},
		{"bad expiring_before", "events:\n  expiring_before: [7d, soon]\n", nil, "events.expiring_before[1]"},
		{"zero expiring_before", "events:\n  expiring_before: [0s]\n", nil, "events.expiring_before[0]"},
		{"bad scanning action", "secret_scanning:\n  action: delete\n", nil, "secret_scanning.action"},
		{"http keys url", "secret_scanning:\n  github: {keys_url: 'http://keys.example/x'}\n", nil, "secret_scanning.github.keys_url"},
		{"scanning without portal", "secret_scanning: {enabled: true}\nportal: {addr: ''}\n", nil, "secret_scanning.enabled: needs portal.addr"},
		{"bad portal addr", "portal:\n  addr: nine\n", nil, "portal.addr"},
		{"bad per", "plans:\n  test: [{limit: 1, period: 1h, per: team}]\n  live: [{limit: 1, period: 1h}]\n", nil, `plans.test[0].per: "team" is not key or tenant`},
		{"two tenant windows of one period", "plans:\n  test: [{limit: 1, period: 1h, per: tenant}, {limit: 2, period: 60m, per: tenant}]\n  live: [{limit: 1, period: 1h}]\n", nil, "plans.test[1].period"},
		{"bad metadata header", "headers:\n  metadata: {team: 'x team'}\n", nil, "headers.metadata.team"},
		{"bad metadata key", "headers:\n  metadata: {Team: x-team}\n", nil, `headers.metadata.Team: key "Team"`},
		{"metadata in a proxy's header", "headers:\n  metadata: {team: Host}\n", nil, "headers.metadata.team: \"host\" is a header a proxy owns"},
		{"metadata in another header", "headers:\n  metadata: {team: x-keygate-tenant}\n", nil, "also used by"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.file != "" {
				path = writeFile(t, c.file)
			}
			_, err := Load(path, envOf(c.env))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), envOf(nil))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add("grpc_addr: ':1'\n")
	f.Add("plans:\n  test: [{limit: 1, period: 1s}]\n  live: [{limit: 1, period: 1h}]\n")
	f.Add("routes: [{methods: [GET], path: /a/**, scopes: [a:read]}]\n")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "k.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := Load(p, envOf(nil))
		if err != nil {
			return
		}
		// Property: whatever loads is valid.
		if err := cfg.Validate(); err != nil {
			t.Fatalf("loaded config fails validation: %v", err)
		}
	})
}

// TestCacheDefaults: the defaults of the cache's own Config (used when a
// caller leaves a field zero) are the configuration's defaults.
func TestCacheDefaults(t *testing.T) {
	def := Default().Cache
	if def.NegativeMax != cache.DefaultNegativeMax || def.MissLookupsPerSecond != cache.DefaultMissLookups {
		t.Fatalf("config defaults negative_max %d, miss_lookups_per_second %d; the cache's %d, %d",
			def.NegativeMax, def.MissLookupsPerSecond, cache.DefaultNegativeMax, cache.DefaultMissLookups)
	}
}

// TestTenantWindowsAndMetadataHeaders: per and headers.metadata reach the
// limits and extauthz configurations, header names lower-cased.
func TestTenantWindowsAndMetadataHeaders(t *testing.T) {
	path := writeFile(t, "plans:\n  test: [{limit: 10, period: 1m}, {limit: 100, period: 1m, per: tenant}]\n  live: [{limit: 1, period: 1h, per: key}]\n"+
		"headers:\n  metadata: {team: X-Keygate-Team, owner: x-owner}\n")
	cfg, err := Load(path, envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.PlanWindows()["test"]; len(got) != 2 || got[0].Tenant() || !got[1].Tenant() {
		t.Errorf("test plan: %+v", got)
	}
	if got := cfg.HeaderNames().Metadata; got["team"] != "x-keygate-team" || got["owner"] != "x-owner" {
		t.Errorf("metadata headers: %v", got)
	}
}
