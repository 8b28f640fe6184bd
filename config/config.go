// Package config reads Keygate's configuration: a strict YAML file, then
// KEYGATE_* environment overrides, every field defaulted and validated
// before anything starts, with the field's name in every error.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration. YAML names are the contract of
// DESIGN.md; the environment variable of a scalar field is KEYGATE_ and its
// path in upper case joined by "_" (database.url → KEYGATE_DATABASE_URL).
type Config struct {
	GRPCAddr        string              `yaml:"grpc_addr"`
	HTTPAddr        string              `yaml:"http_addr"`
	ShutdownTimeout time.Duration       `yaml:"shutdown_timeout"`
	Log             Log                 `yaml:"log"`
	Database        Database            `yaml:"database"`
	Redis           Redis               `yaml:"redis"`
	Admin           Admin               `yaml:"admin"`
	Cache           Cache               `yaml:"cache"`
	KeyFormats      []KeyFormat         `yaml:"key_formats"`
	Plans           map[string][]Window `yaml:"plans"`
	Limits          Limits              `yaml:"limits"`
	Organization    Organization        `yaml:"organization"`
	Auth            Auth                `yaml:"auth"`
	Headers         Headers             `yaml:"headers"`
	Scopes          Scopes              `yaml:"scopes"`
	Routes          []Route             `yaml:"routes"`
	DefaultRoute    *Route              `yaml:"default_route"`
	Roll            Roll                `yaml:"roll"`
	Errors          Errors              `yaml:"errors"`
	Introspection   Introspection       `yaml:"introspection"`
	TLS             TLS                 `yaml:"tls"`
}

// TLS secures the gRPC listener, for Envoy outside a mesh. Files are
// reloaded when they change.
type TLS struct {
	CertFile          string `yaml:"cert_file"` // empty: plaintext (a mesh provides mTLS)
	KeyFile           string `yaml:"key_file"`
	ClientCAFile      string `yaml:"client_ca_file"`      // verify client certificates (mTLS)
	RequireClientCert bool   `yaml:"require_client_cert"` // reject clients without one
}

// Errors shapes the JSON body of denials.
type Errors struct {
	Shape  string      `yaml:"shape"` // nested: {"error":{…}}; flat: {…}
	Fields ErrorFields `yaml:"fields"`
	// Overrides: per Keygate code (invalid_api_key, …) the code, message
	// and type a deployment shows instead.
	Overrides map[string]ErrorText `yaml:"overrides"`
}

// ErrorFields names the body's fields; an empty name leaves one out.
type ErrorFields struct {
	Code      string `yaml:"code"`
	Message   string `yaml:"message"`
	Type      string `yaml:"type"`
	RequestID string `yaml:"request_id"`
}

// ErrorText is what one denial says.
type ErrorText struct {
	Code    string `yaml:"code"`
	Message string `yaml:"message"`
	Type    string `yaml:"type"`
}

// Introspection is a route Keygate answers itself with the calling key's
// description ("test if your key works").
type Introspection struct {
	Path    string   `yaml:"path"` // empty: off
	Methods []string `yaml:"methods"`
}

// Log sets the process log.
type Log struct {
	Level  string `yaml:"level"`  // debug|info|warn|error
	Format string `yaml:"format"` // json|text
}

// Database is the key database and how the cache follows it.
type Database struct {
	URL            string        `yaml:"url"`
	PollInterval   time.Duration `yaml:"poll_interval"`
	Timeout        time.Duration `yaml:"timeout"`
	MaxConns       int           `yaml:"max_conns"`
	Pepper         string        `yaml:"pepper"`
	LastUsedFlush  time.Duration `yaml:"last_used_flush"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// Redis is the shared rate-limit store; empty URL means in-process limits.
type Redis struct {
	URL       string        `yaml:"url"`
	Timeout   time.Duration `yaml:"timeout"`
	KeyPrefix string        `yaml:"key_prefix"`
}

// Admin configures the admin API; an empty token turns it off.
type Admin struct {
	Token string `yaml:"token"`
}

// Cache sizes the key cache.
type Cache struct {
	MaxKeys     int64         `yaml:"max_keys"`
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// NegativeMax bounds the unknown keys remembered, apart from max_keys
	// so that none can push out a real key: 40 bytes each.
	NegativeMax int64 `yaml:"negative_max"`
	// MissLookupsPerSecond is this replica's budget of key-database
	// look-ups for keys not in the cache; over it a miss is 401 while the
	// cache holds every active key, else 503.
	MissLookupsPerSecond int64 `yaml:"miss_lookups_per_second"`
	WarmStart            bool  `yaml:"warm_start"`
	// StaleReady keeps /readyz (and gRPC health) ready while the key
	// database is unreachable. Cached keys are served either way; this
	// only says whether the orchestrator should keep sending traffic.
	StaleReady bool `yaml:"stale_ready"`
}

// KeyFormat is one accepted key prefix and the env it means.
type KeyFormat struct {
	Prefix   string `yaml:"prefix"`
	Env      string `yaml:"env"`
	Checksum *bool  `yaml:"checksum"` // nil: true
}

// HasChecksum reports the checksum setting with its default applied.
func (f KeyFormat) HasChecksum() bool { return f.Checksum == nil || *f.Checksum }

// Window is one rate-limit window of a plan.
type Window struct {
	Limit  int           `yaml:"limit"`
	Period time.Duration `yaml:"period"`
}

// Limits sets what rate limiting does when Redis fails.
type Limits struct {
	OnRedisError string `yaml:"on_redis_error"` // local|open|closed
}

// Organization is the organization header and whether it is required.
type Organization struct {
	Header   string `yaml:"header"`
	Required bool   `yaml:"required"`
}

// Auth is where the key is read from and what 401s say.
type Auth struct {
	Header string `yaml:"header"` // read, then removed before the upstream
	Realm  string `yaml:"realm"`  // WWW-Authenticate realm
	// Failures limits failed authentications per client address (limit 0:
	// off); an address over it gets 429 before any database lookup.
	Failures Window `yaml:"failures"`
	// TrustedHops: how many proxies in front of Envoy append to
	// X-Forwarded-For (0: the client is Envoy's source address).
	TrustedHops int `yaml:"trusted_hops"`
}

// Headers names the headers injected for the upstream.
type Headers struct {
	KeyID  string `yaml:"key_id"`
	Tenant string `yaml:"tenant"`
	Org    string `yaml:"org"`
	Env    string `yaml:"env"`
	Scopes string `yaml:"scopes"`
	Plan   string `yaml:"plan"`
}

// Scopes says how scope strings are written.
type Scopes struct {
	Form string `yaml:"form"` // resource:action | action:resource
}

// Route is one route rule: first match wins.
type Route struct {
	Methods     []string `yaml:"methods"`
	Path        string   `yaml:"path"`
	Scopes      []string `yaml:"scopes"`
	OrgRequired *bool    `yaml:"org_required"`
}

// Roll sets key rolling.
type Roll struct {
	Grace time.Duration `yaml:"grace"`
}

// Default returns the configuration used when nothing is set: SQLite in the
// working directory, in-process limits, the seeds' plans.
func Default() Config {
	return Config{
		GRPCAddr:        ":9191",
		HTTPAddr:        ":9090",
		ShutdownTimeout: 15 * time.Second,
		Log:             Log{Level: "info", Format: "json"},
		Database: Database{
			URL: "sqlite:keygate.db", PollInterval: 2 * time.Second, Timeout: 2 * time.Second,
			MaxConns: 10, LastUsedFlush: 10 * time.Second, ConnectTimeout: 5 * time.Second,
		},
		Redis:        Redis{Timeout: 50 * time.Millisecond, KeyPrefix: "keygate:"},
		Cache:        Cache{MaxKeys: 1_000_000, NegativeTTL: 30 * time.Second, NegativeMax: 100_000, MissLookupsPerSecond: 1000, WarmStart: true},
		KeyFormats:   DefaultKeyFormats(),
		Plans:        DefaultPlans(),
		Limits:       Limits{OnRedisError: "local"},
		Organization: Organization{Header: "x-organization-id"},
		Auth:         Auth{Header: "authorization", Realm: "keygate", Failures: Window{Limit: 30, Period: time.Minute}},
		Headers: Headers{
			KeyID: "x-keygate-key-id", Tenant: "x-keygate-tenant", Org: "x-keygate-org",
			Env: "x-keygate-env", Scopes: "x-keygate-scopes", Plan: "x-keygate-plan",
		},
		Scopes:        Scopes{Form: "resource:action"},
		Roll:          Roll{Grace: 24 * time.Hour},
		Errors:        Errors{Shape: "nested", Fields: ErrorFields{Code: "code", Message: "message", Type: "type", RequestID: "request_id"}},
		Introspection: Introspection{Methods: []string{"GET"}},
	}
}

// DefaultKeyFormats are sk_live_ and sk_test_, with checksums.
func DefaultKeyFormats() []KeyFormat {
	return []KeyFormat{{Prefix: "sk_live_", Env: "live"}, {Prefix: "sk_test_", Env: "test"}}
}

// DefaultPlans are the seeds' numbers.
func DefaultPlans() map[string][]Window {
	return map[string][]Window{
		"test":       {{Limit: 100, Period: time.Hour}, {Limit: 1000, Period: 24 * time.Hour}},
		"live":       {{Limit: 10000, Period: time.Hour}},
		"standard":   {{Limit: 1000, Period: time.Minute}},
		"enterprise": {{Limit: 10000, Period: time.Minute}},
	}
}

// Load reads the file at path (none when empty), applies the environment
// (lookup is os.LookupEnv in production) and validates the result.
func Load(path string, lookup func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		if err := decode(data, &cfg); err != nil {
			return Config{}, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	if lookup != nil {
		if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "KEYGATE", lookup); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// decode reads YAML strictly: an unknown field is an error naming it. Lists
// and maps in the file replace the defaults rather than merging into them.
func decode(data []byte, cfg *Config) error {
	var probe struct {
		Plans      yaml.Node `yaml:"plans"`
		KeyFormats yaml.Node `yaml:"key_formats"`
	}
	// A file that sets plans: replaces the default plans instead of adding.
	if err := yaml.Unmarshal(data, &probe); err == nil && probe.Plans.Kind != 0 {
		cfg.Plans = nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nameFields(data, err)
	}
	return nil
}

var errLine = regexp.MustCompile(`line (\d+): `)

// nameFields puts the field's path before each "line N:" of a YAML error,
// since yaml.v3 names only the line of a value it cannot decode.
func nameFields(data []byte, err error) error {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return err
	}
	msg := errLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(errLine.FindStringSubmatch(m)[1])
		if path := pathAtLine(&root, n, ""); path != "" {
			return m + path + ": "
		}
		return m
	})
	return errors.New(msg)
}

// pathAtLine finds the dotted path of the value on line n.
func pathAtLine(node *yaml.Node, n int, prefix string) string {
	switch node.Kind {
	case yaml.DocumentNode:
		for _, c := range node.Content {
			if p := pathAtLine(c, n, prefix); p != "" {
				return p
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			if p := pathAtLine(v, n, path); p != "" {
				return p
			}
			if k.Line == n || v.Line == n && v.Kind == yaml.ScalarNode {
				return path
			}
		}
	case yaml.SequenceNode:
		for i, c := range node.Content {
			if p := pathAtLine(c, n, fmt.Sprintf("%s[%d]", prefix, i)); p != "" {
				return p
			}
		}
	case yaml.ScalarNode:
		if node.Line == n {
			return prefix
		}
	}
	return ""
}

var durationType = reflect.TypeFor[time.Duration]()

// applyEnv walks cfg's fields by their YAML names. Scalars take the
// variable's text; lists and maps take YAML (or JSON) text.
func applyEnv(v reflect.Value, prefix string, lookup func(string) (string, bool)) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct {
			if err := applyEnv(fv, name, lookup); err != nil {
				return err
			}
			continue
		}
		s, ok := lookup(name)
		if !ok {
			continue
		}
		if err := setFromString(fv, s); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func setFromString(fv reflect.Value, s string) error {
	switch {
	case fv.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(s)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not a boolean", s)
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		fv.SetInt(n)
	default: // lists, maps, pointers to structs: YAML (JSON is YAML too)
		nv := reflect.New(fv.Type())
		dec := yaml.NewDecoder(strings.NewReader(s))
		dec.KnownFields(true)
		if err := dec.Decode(nv.Interface()); err != nil {
			return err
		}
		fv.Set(nv.Elem())
	}
	return nil
}

var headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)

// Validate checks every field; the error names the first bad one.
func (c *Config) Validate() error {
	c.normalize()
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	for field, addr := range map[string]string{"grpc_addr": c.GRPCAddr, "http_addr": c.HTTPAddr} {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(field, "%q is not host:port", addr)
		} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			bad(field, "%q has a bad port", addr)
		}
	}
	positive := map[string]time.Duration{
		"shutdown_timeout":         c.ShutdownTimeout,
		"database.poll_interval":   c.Database.PollInterval,
		"database.timeout":         c.Database.Timeout,
		"database.last_used_flush": c.Database.LastUsedFlush,
		"database.connect_timeout": c.Database.ConnectTimeout,
		"redis.timeout":            c.Redis.Timeout,
		"cache.negative_ttl":       c.Cache.NegativeTTL,
		"roll.grace":               c.Roll.Grace,
	}
	for field, d := range positive {
		if d <= 0 {
			bad(field, "must be a positive duration, got %v", d)
		}
	}
	if c.Cache.NegativeTTL > 10*time.Minute {
		bad("cache.negative_ttl", "at most 10m, so a key created after a miss is found soon, got %v", c.Cache.NegativeTTL)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "%q is not json or text", c.Log.Format)
	}
	if !strings.HasPrefix(c.Database.URL, "sqlite:") && !strings.HasPrefix(c.Database.URL, "postgres://") && !strings.HasPrefix(c.Database.URL, "postgresql://") {
		bad("database.url", "must start with sqlite:, postgres:// or postgresql://")
	}
	if c.Database.MaxConns < 1 {
		bad("database.max_conns", "must be at least 1, got %d", c.Database.MaxConns)
	}
	if c.Cache.MaxKeys < 1 {
		bad("cache.max_keys", "must be at least 1, got %d", c.Cache.MaxKeys)
	}
	if n := c.Cache.NegativeMax; n < 1 || n > 10_000_000 {
		bad("cache.negative_max", "must be from 1 to 10000000 (40 bytes each), got %d", n)
	}
	if n := c.Cache.MissLookupsPerSecond; n < 1 || n > 1_000_000 {
		bad("cache.miss_lookups_per_second", "must be from 1 to 1000000, got %d", n)
	}
	if len(c.KeyFormats) == 0 {
		bad("key_formats", "at least one format is required")
	}
	envs := map[string]bool{}
	for i, f := range c.KeyFormats {
		if f.Env != "test" && f.Env != "live" {
			bad(fmt.Sprintf("key_formats[%d].env", i), "%q is not test or live", f.Env)
		}
		envs[f.Env] = true
	}
	if len(c.Plans) == 0 {
		bad("plans", "at least one plan is required")
	}
	for name, windows := range c.Plans {
		if len(windows) == 0 {
			bad("plans."+name, "needs at least one window")
		}
		periods := map[time.Duration]bool{}
		for i, w := range windows {
			// One window per period: a bucket's Redis key is named by it.
			if periods[w.Period] {
				bad(fmt.Sprintf("plans.%s[%d].period", name, i), "%v is already used by another window of the plan", w.Period)
			}
			periods[w.Period] = true
			if w.Limit < 1 {
				bad(fmt.Sprintf("plans.%s[%d].limit", name, i), "must be at least 1, got %d", w.Limit)
			}
			if w.Period < time.Second || w.Period%time.Second != 0 {
				bad(fmt.Sprintf("plans.%s[%d].period", name, i), "must be whole seconds, at least 1s, got %v", w.Period)
			}
		}
	}
	for env := range envs {
		if _, ok := c.Plans[env]; !ok {
			bad("plans", "no plan named %q, the default plan of %s keys", env, env)
		}
	}
	switch c.Limits.OnRedisError {
	case "local", "open", "closed":
	default:
		bad("limits.on_redis_error", "%q is not local, open or closed", c.Limits.OnRedisError)
	}
	if c.Redis.URL != "" && !strings.HasPrefix(c.Redis.URL, "redis") {
		bad("redis.url", "must be a redis://, rediss:// or redis+sentinel:// URL")
	}
	if c.Scopes.Form != "resource:action" && c.Scopes.Form != "action:resource" {
		bad("scopes.form", "%q is not resource:action or action:resource", c.Scopes.Form)
	}
	headers := map[string]string{
		"organization.header": c.Organization.Header, "auth.header": c.Auth.Header,
		"headers.key_id": c.Headers.KeyID, "headers.tenant": c.Headers.Tenant, "headers.org": c.Headers.Org,
		"headers.env": c.Headers.Env, "headers.scopes": c.Headers.Scopes, "headers.plan": c.Headers.Plan,
	}
	seen := map[string]string{}
	for field, h := range headers {
		if !headerName.MatchString(h) {
			bad(field, "%q is not a valid header name", h)
		} else if other, dup := seen[h]; dup {
			bad(field, "%q is also used by %s", h, other)
		}
		seen[h] = field
	}
	if c.Auth.Failures.Limit < 0 || c.Auth.Failures.Limit > 0 && c.Auth.Failures.Period <= 0 {
		bad("auth.failures", "limit must be 0 (off) or positive with a positive period")
	}
	if c.Auth.TrustedHops < 0 || c.Auth.TrustedHops > 10 {
		bad("auth.trusted_hops", "must be between 0 and 10, got %d", c.Auth.TrustedHops)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls", "cert_file and key_file must be set together")
	}
	if (c.TLS.ClientCAFile != "" || c.TLS.RequireClientCert) && c.TLS.CertFile == "" {
		bad("tls.client_ca_file", "client certificates need tls.cert_file and tls.key_file")
	}
	if c.TLS.RequireClientCert && c.TLS.ClientCAFile == "" {
		bad("tls.require_client_cert", "needs tls.client_ca_file")
	}
	if c.Errors.Shape != "nested" && c.Errors.Shape != "flat" {
		bad("errors.shape", "%q is not nested or flat", c.Errors.Shape)
	}
	if c.Errors.Fields.Message == "" {
		bad("errors.fields.message", "must not be empty")
	}
	names := map[string]string{}
	for field, n := range map[string]string{"errors.fields.code": c.Errors.Fields.Code, "errors.fields.message": c.Errors.Fields.Message,
		"errors.fields.type": c.Errors.Fields.Type, "errors.fields.request_id": c.Errors.Fields.RequestID} {
		if n == "" {
			continue
		}
		if other, dup := names[n]; dup {
			bad(field, "%q is also used by %s", n, other)
		}
		names[n] = field
	}
	if p := c.Introspection.Path; p != "" && (p[0] != '/' || strings.ContainsAny(p, "?#*")) {
		bad("introspection.path", "%q must be a plain path starting with /", p)
	}
	if c.Auth.Realm == "" || strings.ContainsAny(c.Auth.Realm, "\"\\\r\n") {
		bad("auth.realm", "must be non-empty text without quotes or backslashes")
	}
	if len(errs) == 0 {
		return nil
	}
	sortErrs(errs)
	return errors.Join(errs...)
}

// normalize lower-cases header names: Envoy hands them over lower-cased.
func (c *Config) normalize() {
	for _, p := range []*string{&c.Organization.Header, &c.Auth.Header, &c.Headers.KeyID, &c.Headers.Tenant,
		&c.Headers.Org, &c.Headers.Env, &c.Headers.Scopes, &c.Headers.Plan} {
		*p = strings.ToLower(strings.TrimSpace(*p))
	}
}

// sortErrs orders errors by text so messages do not depend on map order.
func sortErrs(errs []error) {
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && errs[j].Error() < errs[j-1].Error(); j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
}
