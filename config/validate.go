package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
	"github.com/keygate/keygate/secretscan"
)

var headerName = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)

// Validate checks every field and changes nothing. Rules of a package's
// own domain are that package's: key formats are checked by keys, routes
// and the introspection route by policy, plans by limits, error bodies
// by extauthz. The error lists every problem, sorted, each naming its
// field's path.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	// A delegate's joined errors are taken apart, so that every problem
	// is sorted with the others.
	delegate := func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = append(errs, j.Unwrap()...)
		} else if err != nil {
			errs = append(errs, err)
		}
	}
	addrs := map[string]string{"grpc_addr": c.GRPCAddr, "http_addr": c.HTTPAddr}
	if c.Portal.Addr != "" {
		addrs["portal.addr"] = c.Portal.Addr
	}
	for field, addr := range addrs {
		if _, port, err := net.SplitHostPort(addr); err != nil {
			bad(field, "%q is not host:port (e.g. :9090 or 127.0.0.1:9090)", addr)
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
		"audit.retention":          c.Audit.Retention,
		"usage.flush_interval":     c.Usage.FlushInterval,
		"usage.retention":          c.Usage.Retention,
		"webhooks.max_age":         c.Webhooks.MaxAge,
		"webhooks.timeout":         c.Webhooks.Timeout,
		"webhooks.min_backoff":     c.Webhooks.MinBackoff,
		"webhooks.max_backoff":     c.Webhooks.MaxBackoff,
		"webhooks.retention":       c.Webhooks.Retention,
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

	_, err := keys.NewFormats(c.Formats())
	delegate(err)
	_, err = policy.New(c.Policy())
	delegate(err)
	delegate(limits.ValidatePlans(c.PlanWindows()))
	delegate(c.ErrorFormat().Validate())
	_, err = c.AdminTokens()
	delegate(err)
	_, err = c.WebhookEndpoints(nil)
	delegate(err)
	delegate(c.eventsConfig(nil).Validate())
	delegate(secretscan.ValidateSettings(c.SecretScanning.Action, c.SecretScanning.GitHub.KeysURL))
	delegate(c.consoleErrors())
	delegate(c.validatePortal())
	if c.Webhooks.Concurrency == 0 {
		bad("webhooks.concurrency", "must be from 1 to 256, got 0")
	}
	if c.SecretScanning.Enabled && c.Portal.Addr == "" {
		bad("secret_scanning.enabled", "needs portal.addr, the listener GitHub posts to")
	}
	for _, env := range c.formatEnvs() {
		if _, ok := c.Plans[env]; !ok && len(c.Plans) > 0 {
			bad("plans", "no plan named %q, the default plan of %s keys", env, env)
		}
	}

	switch c.Limits.OnRedisError {
	case "local", "open", "closed":
	default:
		bad("limits.on_redis_error", "%q is not local, open or closed", c.Limits.OnRedisError)
	}
	if w := c.Redis.PipelineWindow; w < 0 || w > c.Redis.Timeout/2 {
		bad("redis.pipeline_window", "must be between 0 and half of redis.timeout (%v), got %v: a check waits for its pipeline to leave and then for the answer", c.Redis.Timeout/2, w)
	}
	if n := c.Redis.PipelineLimit; n < 1 || n > 10_000 {
		bad("redis.pipeline_limit", "must be between 1 and 10000 commands, got %d", n)
	}
	if c.Redis.URL != "" && !strings.HasPrefix(c.Redis.URL, "redis") {
		bad("redis.url", "must be a redis://, rediss://, redis+cluster:// or redis+sentinel:// URL")
	}
	headers := map[string]string{
		"organization.header": c.Organization.Header, "auth.header": c.Auth.Header,
		"headers.key_id": c.Headers.KeyID, "headers.tenant": c.Headers.Tenant, "headers.org": c.Headers.Org,
		"headers.env": c.Headers.Env, "headers.scopes": c.Headers.Scopes, "headers.plan": c.Headers.Plan,
	}
	for k, h := range c.Headers.Metadata {
		field := "headers.metadata." + k
		headers[field] = h
		if err := keys.ValidateMetadata(map[string]string{k: "x"}); err != nil {
			bad(field, "%v", err)
		}
		if forbiddenHeaders[strings.ToLower(strings.TrimSpace(h))] {
			bad(field, "%q is a header a proxy owns; it cannot carry metadata", h)
		}
	}
	seen := map[string]string{}
	for _, field := range sortedKeys(headers) {
		h := strings.ToLower(strings.TrimSpace(headers[field]))
		if !headerName.MatchString(h) {
			bad(field, "%q is not a valid header name", headers[field])
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
	if c.Auth.Realm == "" || strings.ContainsAny(c.Auth.Realm, "\"\\\r\n") {
		bad("auth.realm", "must be non-empty text without quotes or backslashes")
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
	if len(errs) == 0 {
		return nil
	}
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// formatEnvs lists the envs the key formats mean, sorted.
func (c *Config) formatEnvs() []string {
	set := map[string]bool{}
	for _, f := range c.KeyFormats {
		if f.Env == string(keys.EnvTest) || f.Env == string(keys.EnvLive) {
			set[f.Env] = true
		}
	}
	out := make([]string, 0, len(set))
	for e := range set {
		out = append(out, e)
	}
	sort.Strings(out)
	return out
}

// normalize lower-cases header names: Envoy hands them over lower-cased.
func (c *Config) normalize() {
	for _, p := range []*string{&c.Organization.Header, &c.Auth.Header, &c.Headers.KeyID, &c.Headers.Tenant,
		&c.Headers.Org, &c.Headers.Env, &c.Headers.Scopes, &c.Headers.Plan} {
		*p = strings.ToLower(strings.TrimSpace(*p))
	}
	for k, h := range c.Headers.Metadata {
		c.Headers.Metadata[k] = strings.ToLower(strings.TrimSpace(h))
	}
}

// forbiddenHeaders are the request headers a proxy or HTTP itself owns:
// metadata may not be forwarded in them.
var forbiddenHeaders = map[string]bool{
	"host": true, "content-length": true, "content-type": true, "transfer-encoding": true, "connection": true,
	"te": true, "upgrade": true, "cookie": true, "x-forwarded-for": true, "x-request-id": true,
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
