package config

import (
	"time"

	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/secretscan"
)

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
		Redis:        Redis{Timeout: 50 * time.Millisecond, KeyPrefix: "keygate:", PipelineWindow: 0, PipelineLimit: 128},
		Cache:        Cache{MaxKeys: 1_000_000, NegativeTTL: 30 * time.Second, NegativeMax: 100_000, MissLookupsPerSecond: 1000, WarmStart: true},
		Audit:        Audit{Retention: 365 * 24 * time.Hour},
		Usage:        Usage{FlushInterval: 10 * time.Second, Retention: 90 * 24 * time.Hour},
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
		Webhooks: Webhooks{MaxAge: events.DefaultMaxAge, Timeout: events.DefaultTimeout, Concurrency: events.DefaultConcurrency,
			MinBackoff: events.DefaultMinBackoff, MaxBackoff: events.DefaultMaxBackoff, Retention: 30 * 24 * time.Hour},
		Events:         Events{ExpiringBefore: events.DefaultExpiringBefore()},
		SecretScanning: SecretScanning{Action: string(secretscan.ActionRevoke), GitHub: SecretScanningGitHub{KeysURL: secretscan.DefaultKeysURL}},
		Portal: Portal{Addr: ":9092", PublicURL: "http://localhost:9092", SessionCodeTTL: 15 * time.Minute, SessionTTL: time.Hour,
			Title: "API keys", AccentColor: "#2563eb", FrameAncestors: "'none'"},
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
