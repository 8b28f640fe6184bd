package config

import (
	"sort"
	"strings"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/events"
	"github.com/keygate/keygate/extauthz"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/limits"
	"github.com/keygate/keygate/policy"
)

// The packages that own a rule take the config in their own types; these
// conversions are the one place that maps the file's shape onto theirs.

// Formats returns the key formats in the keys package's terms.
func (c *Config) Formats() []keys.Format {
	fs := make([]keys.Format, len(c.KeyFormats))
	for i, f := range c.KeyFormats {
		fs[i] = keys.Format{Prefix: f.Prefix, Env: keys.Env(f.Env), Checksum: f.HasChecksum()}
	}
	return fs
}

// Policy returns the route policy in the policy package's terms.
func (c *Config) Policy() policy.Config {
	pc := policy.Config{
		OrgRequired: c.Organization.Required, ScopeForm: policy.ScopeForm(c.Scopes.Form),
		Introspection: policy.Introspection{Path: c.Introspection.Path, Methods: c.Introspection.Methods},
	}
	for _, r := range c.Routes {
		pc.Routes = append(pc.Routes, r.policy())
	}
	if c.DefaultRoute != nil {
		d := c.DefaultRoute.policy()
		pc.DefaultRoute = &d
	}
	return pc
}

func (r Route) policy() policy.Route {
	return policy.Route{Methods: r.Methods, Path: r.Path, Scopes: r.Scopes, OrgRequired: r.OrgRequired}
}

// PlanWindows returns the rate-limit plans in the limits package's terms.
func (c *Config) PlanWindows() map[string][]limits.Window {
	plans := make(map[string][]limits.Window, len(c.Plans))
	for name, ws := range c.Plans {
		plans[name] = make([]limits.Window, 0, len(ws)) // a plan without windows is an error to report
		for _, w := range ws {
			plans[name] = append(plans[name], limits.Window{Limit: w.Limit, Period: w.Period, Per: limits.Per(w.Per)})
		}
	}
	return plans
}

// PlanNames lists the plans, sorted.
func (c *Config) PlanNames() []string {
	names := make([]string, 0, len(c.Plans))
	for name := range c.Plans {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Limiter returns the rate limiter's configuration.
func (c *Config) Limiter() limits.Config {
	return limits.Config{
		Plans: c.PlanWindows(), RedisURL: c.Redis.URL, OnRedisError: limits.Mode(c.Limits.OnRedisError),
		Timeout: c.Redis.Timeout, KeyPrefix: c.Redis.KeyPrefix,
		PipelineWindow: c.Redis.PipelineWindow, PipelineLimit: c.Redis.PipelineLimit,
	}
}

// ErrorFormat returns how denial bodies look, in extauthz's terms.
func (c *Config) ErrorFormat() extauthz.ErrorFormat {
	e := c.Errors
	f := extauthz.ErrorFormat{Flat: e.Shape == "flat", CodeField: e.Fields.Code, MessageField: e.Fields.Message,
		TypeField: e.Fields.Type, RequestIDField: e.Fields.RequestID, Overrides: map[string]extauthz.ErrorText{}}
	for k, v := range e.Overrides {
		f.Overrides[k] = extauthz.ErrorText(v)
	}
	return f
}

// HeaderNames returns the headers Keygate reads and injects.
func (c *Config) HeaderNames() extauthz.HeaderNames {
	return extauthz.HeaderNames{
		Auth: c.Auth.Header, Org: c.Organization.Header,
		KeyID: c.Headers.KeyID, Tenant: c.Headers.Tenant, OrgOut: c.Headers.Org,
		Env: c.Headers.Env, Scopes: c.Headers.Scopes, Plan: c.Headers.Plan, Metadata: c.Headers.Metadata,
	}
}

// DatabaseKind is "sqlite" or "postgres", for logs and messages.
func (c *Config) DatabaseKind() string {
	if strings.HasPrefix(c.Database.URL, "sqlite:") {
		return "sqlite"
	}
	return "postgres"
}

// WebhookEndpoints returns the webhook endpoints in the events package's
// terms. lookup reads the variables secret_env names (os.LookupEnv in the
// server); nil checks only their names.
func (c *Config) WebhookEndpoints(lookup func(string) (string, bool)) ([]events.Endpoint, error) {
	cfgs := make([]events.EndpointConfig, len(c.Webhooks.Endpoints))
	for i, e := range c.Webhooks.Endpoints {
		cfgs[i] = events.EndpointConfig{URL: e.URL, Secret: e.Secret, SecretEnv: e.SecretEnv, Events: e.Events, Tenants: e.Tenants}
	}
	return events.Endpoints("webhooks.endpoints", cfgs, lookup)
}

// Publisher returns the events publisher's configuration, its
// endpoints' secrets read through lookup (os.LookupEnv in the server).
func (c *Config) Publisher(lookup func(string) (string, bool)) (events.Config, error) {
	eps, err := c.WebhookEndpoints(lookup)
	if err != nil {
		return events.Config{}, err
	}
	return c.eventsConfig(eps), nil
}

func (c *Config) eventsConfig(eps []events.Endpoint) events.Config {
	w := c.Webhooks
	return events.Config{
		Endpoints: eps, MaxAge: w.MaxAge, Timeout: w.Timeout, Concurrency: w.Concurrency,
		MinBackoff: w.MinBackoff, MaxBackoff: w.MaxBackoff, ExpiringBefore: c.Events.ExpiringBefore,
		QueryTimeout: c.Database.Timeout,
	}
}

// AdminTokens returns the admin tokens: admin.token as the token named
// "default", then admin.tokens.
func (c *Config) AdminTokens() (*admin.Tokens, error) {
	list := make([]admin.TokenConfig, len(c.Admin.Tokens))
	for i, t := range c.Admin.Tokens {
		list[i] = admin.TokenConfig{Name: t.Name, SHA256: t.SHA256, Role: t.Role}
	}
	return admin.NewTokens(c.Admin.Token, list)
}
