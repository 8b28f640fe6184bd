package deploy

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// keygateConfig mirrors the schema of Keygate's config file (DESIGN.md,
// Config) as the deployment artifacts may use it: a field not here fails
// the decode. It stands in for the config package's loader; wire
// loadKeygateConfig to config.Load (write data to a temp file, Load it with
// a nil lookup) and delete this file's types.
type keygateConfig struct {
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	Log      struct {
		Level  string `json:"level"`
		Format string `json:"format"`
	} `json:"log"`
	Database struct {
		URL           string   `json:"url"`
		PollInterval  duration `json:"poll_interval"`
		Timeout       duration `json:"timeout"`
		MaxConns      int      `json:"max_conns"`
		Pepper        string   `json:"pepper"`
		LastUsedFlush duration `json:"last_used_flush"`
	} `json:"database"`
	Redis struct {
		URL       string   `json:"url"`
		Timeout   duration `json:"timeout"`
		KeyPrefix string   `json:"key_prefix"`
	} `json:"redis"`
	Admin struct {
		Token string `json:"token"`
	} `json:"admin"`
	Cache struct {
		MaxKeys     int64    `json:"max_keys"`
		NegativeTTL duration `json:"negative_ttl"`
		WarmStart   *bool    `json:"warm_start"`
	} `json:"cache"`
	KeyFormats []struct {
		Prefix   string `json:"prefix"`
		Env      string `json:"env"`
		Checksum *bool  `json:"checksum"`
	} `json:"key_formats"`
	Plans  map[string][]window `json:"plans"`
	Limits struct {
		OnRedisError string `json:"on_redis_error"`
	} `json:"limits"`
	Organization struct {
		Header   string `json:"header"`
		Required bool   `json:"required"`
	} `json:"organization"`
	Auth struct {
		Header string `json:"header"`
		Realm  string `json:"realm"`
	} `json:"auth"`
	Headers struct {
		KeyID  string `json:"key_id"`
		Tenant string `json:"tenant"`
		Org    string `json:"org"`
		Env    string `json:"env"`
		Scopes string `json:"scopes"`
		Plan   string `json:"plan"`
	} `json:"headers"`
	Routes       []route `json:"routes"`
	DefaultRoute *route  `json:"default_route"`
	Roll         struct {
		Grace duration `json:"grace"`
	} `json:"roll"`
}

// route is one route rule; org_required as in DESIGN.md's route example.
type route struct {
	Methods     []string `json:"methods"`
	Path        string   `json:"path"`
	Scopes      []string `json:"scopes"`
	OrgRequired *bool    `json:"org_required"`
}

type window struct {
	Limit  int      `json:"limit"`
	Period duration `json:"period"`
}

// duration is a Go duration string ("2s", "24h"), as the config reads it.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"2s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// loadKeygateConfig decodes a keygate.yaml strictly and checks the values
// the schema constrains.
func loadKeygateConfig(data []byte) error {
	var c keygateConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return fmt.Errorf("keygate.yaml: %w", err)
	}
	var errs []error
	oneOf := func(field, v string, allowed ...string) {
		if v != "" && !slices.Contains(allowed, v) {
			errs = append(errs, fmt.Errorf("%s: %q is not one of %v", field, v, allowed))
		}
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "json", "text")
	oneOf("limits.on_redis_error", c.Limits.OnRedisError, "local", "open", "closed")
	for i, f := range c.KeyFormats {
		if f.Prefix == "" {
			errs = append(errs, fmt.Errorf("key_formats[%d].prefix: empty", i))
		}
		if f.Env != "test" && f.Env != "live" {
			errs = append(errs, fmt.Errorf("key_formats[%d].env: %q is not test or live", i, f.Env))
		}
	}
	for name, ws := range c.Plans {
		for i, w := range ws {
			if w.Limit <= 0 || w.Period <= 0 {
				errs = append(errs, fmt.Errorf("plans.%s[%d]: limit and period must be positive", name, i))
			}
		}
	}
	for i, r := range c.Routes {
		if !strings.HasPrefix(r.Path, "/") {
			errs = append(errs, fmt.Errorf("routes[%d].path: %q does not start with /", i, r.Path))
		}
		for _, s := range r.Scopes {
			if res, act, ok := strings.Cut(s, ":"); !ok || res == "" || act == "" {
				errs = append(errs, fmt.Errorf("routes[%d].scopes: %q is not resource:action", i, s))
			}
		}
	}
	return errors.Join(errs...)
}
