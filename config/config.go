// Package config reads Keygate's configuration: a strict YAML file, then
// KEYGATE_* environment overrides, every field defaulted. It decodes and
// delegates: each rule belongs to the package that uses it (key formats to
// keys, routes to policy, plans to limits, error bodies to extauthz), and
// config reports every bad field with its path, the file's line and, for
// a misspelt name, the closest known one.
package config

import "time"

// Config is the whole configuration. YAML names are the product's
// contract; the environment variable of a scalar field is KEYGATE_ and its
// path in upper case joined by "_" (database.url → KEYGATE_DATABASE_URL).
// Durations are written with a unit, days included ("30s", "7d").
type Config struct {
	GRPCAddr        string              `yaml:"grpc_addr"`
	HTTPAddr        string              `yaml:"http_addr"`
	ShutdownTimeout time.Duration       `yaml:"shutdown_timeout"`
	Log             Log                 `yaml:"log"`
	Database        Database            `yaml:"database"`
	Redis           Redis               `yaml:"redis"`
	Admin           Admin               `yaml:"admin"`
	Audit           Audit               `yaml:"audit"`
	Usage           Usage               `yaml:"usage"`
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
	Webhooks        Webhooks            `yaml:"webhooks"`
	Events          Events              `yaml:"events"`
	SecretScanning  SecretScanning      `yaml:"secret_scanning"`
	Portal          Portal              `yaml:"portal"`
	Console         Console             `yaml:"console"`
}

// Webhooks sends events to HTTP endpoints, signed as Standard Webhooks
// sign them, from the key database's outbox.
type Webhooks struct {
	Endpoints []WebhookEndpoint `yaml:"endpoints"`
	// MaxAge is how long an event is retried before it is marked failed.
	MaxAge      time.Duration `yaml:"max_age"`
	Timeout     time.Duration `yaml:"timeout"` // one attempt
	Concurrency int           `yaml:"concurrency"`
	MinBackoff  time.Duration `yaml:"min_backoff"`
	MaxBackoff  time.Duration `yaml:"max_backoff"`
	// Retention keeps delivered and failed events for keygate webhooks
	// deliveries.
	Retention time.Duration `yaml:"retention"`
}

// WebhookEndpoint is one receiver of events: its signing secret is
// Secret (whsec_…) or the value of the variable SecretEnv names; empty
// Events and Tenants mean all.
type WebhookEndpoint struct {
	URL       string   `yaml:"url"`
	Secret    string   `yaml:"secret"`
	SecretEnv string   `yaml:"secret_env"`
	Events    []string `yaml:"events"`
	Tenants   []string `yaml:"tenants"`
}

// Events sets the events Keygate notices itself.
type Events struct {
	// ExpiringBefore are the times before a key's expiry (or the end of a
	// roll's grace) at which key.expiring is sent.
	ExpiringBefore []time.Duration `yaml:"expiring_before"`
}

// SecretScanning answers GitHub's secret scanning partner program on the
// portal listener.
type SecretScanning struct {
	Enabled bool                 `yaml:"enabled"`
	Action  string               `yaml:"action"` // revoke | notify
	GitHub  SecretScanningGitHub `yaml:"github"`
}

// SecretScanningGitHub is where GitHub's signing keys are read.
type SecretScanningGitHub struct {
	KeysURL string `yaml:"keys_url"`
}

// Portal is the listener meant to face the internet: the tenants' API-keys
// portal and, with secret scanning on, GitHub's endpoint.
type Portal struct {
	Addr           string        `yaml:"addr"`
	PublicURL      string        `yaml:"public_url"`       // where users reach addr; links point here
	SessionCodeTTL time.Duration `yaml:"session_code_ttl"` // a portal link's single-use code
	SessionTTL     time.Duration `yaml:"session_ttl"`      // the session it starts
	Title          string        `yaml:"title"`
	LogoURL        string        `yaml:"logo_url"`
	AccentColor    string        `yaml:"accent_color"`    // #rgb or #rrggbb
	FrameAncestors string        `yaml:"frame_ancestors"` // CSP frame-ancestors: 'none', 'self' or origins
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
	// PipelineWindow is how long concurrent checks' Redis commands may
	// wait for more to join their pipeline while checks arrive faster than
	// one a round trip; PipelineLimit caps a pipeline's commands (and
	// sends a full one before its window ends).
	PipelineWindow time.Duration `yaml:"pipeline_window"`
	PipelineLimit  int           `yaml:"pipeline_limit"`
}

// Admin configures the admin API; an empty token turns it off.
type Admin struct {
	// Token is one admin token, named "default" with role admin
	// (KEYGATE_ADMIN_TOKEN); Tokens are named tokens with roles.
	Token  string       `yaml:"token"`
	Tokens []AdminToken `yaml:"tokens"`
}

// AdminToken is one named admin token: its SHA-256 (hex), never the
// token, and its role (admin, viewer or portal).
type AdminToken struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	Role   string `yaml:"role"`
}

// Audit keeps the audit log.
type Audit struct {
	Retention time.Duration `yaml:"retention"`
}

// Usage counts each key's decisions per hour.
type Usage struct {
	FlushInterval time.Duration `yaml:"flush_interval"`
	Retention     time.Duration `yaml:"retention"`
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
	Per    string        `yaml:"per"` // key (default) | tenant
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
	// Metadata maps a key's metadata keys to the headers that forward
	// them upstream on allowed requests, e.g. {team: x-keygate-team}.
	Metadata map[string]string `yaml:"metadata"`
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
