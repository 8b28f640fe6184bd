package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/policy"
)

// TestErrorsReadAsYAML: every problem of a file is reported, each at its
// own line with the field's path, in words rather than Go type names.
func TestErrorsReadAsYAML(t *testing.T) {
	cases := []struct {
		name, file string
		want       []string
	}{
		{"misspelt section", "grpc_addr: ':1'\ndatabse:\n  url: x\n", []string{"keygate.yaml:2: databse: unknown field; did you mean database?"}},
		{"far from any name", "zzzzzzzzzz: 1\n", []string{"keygate.yaml:1: zzzzzzzzzz: unknown field"}},
		{"number as duration", "database:\n  poll_interval: 5\n", []string{`keygate.yaml:2: database.poll_interval: "5" has no unit: write e.g. 5s, 5m, 5h or 5d`}},
		{"word as duration", "roll:\n  grace: soon\n", []string{`keygate.yaml:2: roll.grace: "soon" is not a duration`}},
		{"list as duration", "roll:\n  grace: [1]\n", []string{"keygate.yaml:2: roll.grace: must be a duration"}},
		{"word as number", "cache:\n  max_keys: lots\n", []string{`keygate.yaml:2: cache.max_keys: "lots" is not a whole number`}},
		{"word as bool", "organization:\n  required: maybe\n", []string{`keygate.yaml:2: organization.required: "maybe" is not true or false`}},
		{"scalar as list", "grpc_addr: ':1'\nkey_formats: sk_\n", []string{`keygate.yaml:2: key_formats: "sk_" is not a list`}},
		{"syntax error on line 2", "grpc_addr: ':1'\nhttp_addr: :9090: x\n", []string{"keygate.yaml:2: mapping values are not allowed"}},
		{"window in a plan", "plans:\n  test: [{limit: 1, period: 1h, burst: 3}]\n", []string{"keygate.yaml:2: plans.test[0].burst: unknown field"}},
		{"a plan without windows", "plans:\n  test: []\n  live: [{limit: 1, period: 1h}]\n", []string{"plans.test: needs at least one window"}},
		{"two problems, both reported", "grpc_addr: nope\ncache:\n  max_keys: 0\n", []string{`grpc_addr: "nope" is not host:port`, "cache.max_keys: must be at least 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeFile(t, tc.file), envOf(nil))
			if err == nil {
				t.Fatal("Load accepted the file")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nwant it to contain %q", err, w)
				}
			}
			for _, goish := range []string{"config.", "time.Duration", "!!", "not found in type"} {
				if strings.Contains(err.Error(), goish) {
					t.Errorf("error %q shows Go or YAML internals (%q)", err, goish)
				}
			}
		})
	}
}

func TestDaysEverywhere(t *testing.T) {
	cfg, err := Load(writeFile(t, "roll:\n  grace: 2d\ncache:\n  negative_ttl: 1m\n"), envOf(map[string]string{"KEYGATE_SHUTDOWN_TIMEOUT": "1d"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Roll.Grace != 48*time.Hour || cfg.ShutdownTimeout != 24*time.Hour {
		t.Fatalf("grace %v, shutdown %v", cfg.Roll.Grace, cfg.ShutdownTimeout)
	}
	cfg, err = Load("", envOf(map[string]string{"KEYGATE_PLANS": `{test: [{limit: 5, period: 1d}], live: [{limit: 9, period: 1h}]}`}))
	if err != nil || cfg.Plans["test"][0].Period != 24*time.Hour {
		t.Fatalf("plans from the environment with days: %v %v", cfg.Plans, err)
	}
	_, err = Load("", envOf(map[string]string{"KEYGATE_PLANS": `{test: [{limit: 5, period: 5}]}`}))
	if err == nil || !strings.Contains(err.Error(), `KEYGATE_PLANS:1: plans.test[0].period: "5" has no unit`) {
		t.Fatalf("a bad duration in KEYGATE_PLANS: %v", err)
	}
}

func TestUnknownEnv(t *testing.T) {
	got := UnknownEnv([]string{
		"KEYGATE_DATABASE_URI=postgres://x", "KEYGATE_DATABASE_URL=sqlite:k.db", "KEYGATE_TEST_REDIS_URL=redis://x",
		"HOME=/root", "KEYGATE_CONFIG=/etc/k.yaml", "KEYGATE_REDIS_TIMEOUT=1s", "KEYGATE_WHATEVER_THIS_IS=1",
	})
	want := []string{
		"KEYGATE_DATABASE_URI is not a Keygate setting and is ignored; did you mean KEYGATE_DATABASE_URL?",
		"KEYGATE_WHATEVER_THIS_IS is not a Keygate setting and is ignored",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UnknownEnv = %q\nwant %q", got, want)
	}
	for _, name := range []string{"KEYGATE_ADMIN_TOKEN", "KEYGATE_DATABASE_POLL_INTERVAL", "KEYGATE_PLANS", "KEYGATE_AUTH_FAILURES_LIMIT"} {
		if w := UnknownEnv([]string{name + "=1"}); len(w) != 0 {
			t.Errorf("%s reported unknown: %v", name, w)
		}
	}
}

// TestValidateChangesNothing: Validate only reads; Load normalizes.
func TestValidateChangesNothing(t *testing.T) {
	cfg := Default()
	cfg.Organization.Header = "X-Org-Id"
	before := cfg.Organization.Header
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a header name in capitals is valid: %v", err)
	}
	if cfg.Organization.Header != before {
		t.Fatalf("Validate changed the header to %q", cfg.Organization.Header)
	}
	loaded, err := Load("", envOf(map[string]string{"KEYGATE_ORGANIZATION_HEADER": "X-Org-Id"}))
	if err != nil || loaded.Organization.Header != "x-org-id" {
		t.Fatalf("Load normalizes header names: %q %v", loaded.Organization.Header, err)
	}
}

func TestYAMLRoutes(t *testing.T) {
	const doc = `
routes:
  - {methods: [GET], path: "/api/v1/patients/**", scopes: [patients:read]}
  - {methods: [POST, PUT, PATCH], path: "/api/v1/patients/**", scopes: [patients:write], org_required: true}
  - methods: [get]
    path: /api/v1/forms/*
    scopes: [forms:read, forms:list]
    org_required: false
default_route: {scopes: []}
organization: {required: true}
`
	cfg, err := Load(writeFile(t, doc), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	want := []policy.Route{
		{Methods: []string{"GET"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:read"}},
		{Methods: []string{"POST", "PUT", "PATCH"}, Path: "/api/v1/patients/**", Scopes: []string{"patients:write"}, OrgRequired: &yes},
		{Methods: []string{"get"}, Path: "/api/v1/forms/*", Scopes: []string{"forms:read", "forms:list"}, OrgRequired: &no},
	}
	pc := cfg.Policy()
	if !reflect.DeepEqual(pc.Routes, want) {
		t.Fatalf("routes = %+v, want %+v", pc.Routes, want)
	}
	p, err := policy.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path string
		want               policy.Match
	}{
		{"get", "GET", "/api/v1/patients/1", policy.Match{Found: true, Route: "/api/v1/patients/**", Scopes: []string{"patients:read"}, OrgRequired: true}},
		{"put", "PUT", "/api/v1/patients/1", policy.Match{Found: true, Route: "/api/v1/patients/**", Scopes: []string{"patients:write"}, OrgRequired: true}},
		{"forms", "GET", "/api/v1/forms/2", policy.Match{Found: true, Route: "/api/v1/forms/*", Scopes: []string{"forms:read", "forms:list"}, OrgRequired: false}},
		{"default", "DELETE", "/api/v1/patients/1", policy.Match{Found: true, Route: "default", Scopes: []string{}, OrgRequired: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Match(tt.method, tt.path, nil)
			if err != nil || !reflect.DeepEqual(m, tt.want) {
				t.Fatalf("Match = %+v, %v; want %+v", m, err, tt.want)
			}
		})
	}
}
