package events

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/httpurl"
	"github.com/keygate/keygate/store"
)

// The Standard Webhooks headers (https://www.standardwebhooks.com).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix starts every signing secret, as Standard Webhooks writes
// them: whsec_ and the secret's bytes in base64.
const SecretPrefix = "whsec_"

// A secret holds 24 to 64 bytes, as Standard Webhooks asks.
const (
	minSecretBytes = 24
	maxSecretBytes = 64
)

// Secret is an endpoint's signing secret. It prints and logs as
// "whsec_…", never its value.
type Secret struct{ key []byte }

// ParseSecret reads a secret written as whsec_<base64>.
func ParseSecret(s string) (Secret, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), SecretPrefix)
	if !ok {
		return Secret{}, fmt.Errorf("must start with %s (keygate webhooks secret makes one)", SecretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	// The decoder skips line breaks: a secret is the one way of writing it.
	if err != nil || base64.StdEncoding.EncodeToString(key) != rest {
		return Secret{}, fmt.Errorf("the part after %s is not base64", SecretPrefix)
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return Secret{}, fmt.Errorf("holds %d bytes; a secret has %d to %d", len(key), minSecretBytes, maxSecretBytes)
	}
	return Secret{key: key}, nil
}

// NewSecret returns a fresh signing secret of 32 random bytes.
func NewSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading crypto/rand: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b[:]), nil
}

// String hides the secret.
func (Secret) String() string { return SecretPrefix + "…" }

// GoString hides the secret from %#v.
func (Secret) GoString() string { return SecretPrefix + "…" }

// LogValue hides the secret from logs.
func (Secret) LogValue() slog.Value { return slog.StringValue(SecretPrefix + "…") }

// Sign is the webhook-signature header of body sent as message id at ts:
// "v1," and the base64 HMAC-SHA256 of "id.ts.body" under the secret.
func (s Secret) Sign(id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, ts, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// EndpointConfig is one webhook endpoint as configured. The secret is
// Secret itself or, with SecretEnv, the value of that variable.
type EndpointConfig struct {
	URL       string
	Secret    string
	SecretEnv string
	Events    []string // empty: every type
	Tenants   []string // empty: every tenant
}

// Endpoint is one webhook endpoint: where events go and which ones.
type Endpoint struct {
	URL     string
	Secret  Secret
	Events  []string // empty: every type
	Tenants []string // empty: every tenant
}

// wants reports whether an event of type typ about tenant goes to e.
func (e *Endpoint) wants(typ, tenant string) bool {
	return (len(e.Events) == 0 || slices.Contains(e.Events, typ)) &&
		(len(e.Tenants) == 0 || slices.Contains(e.Tenants, tenant))
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Endpoints checks the configured endpoints, naming each bad field by
// its path under field ("webhooks.endpoints[0].url"). With lookup nil it
// checks only that secret_env names a variable; with a lookup (the
// server's os.LookupEnv) it reads the variable and checks its secret.
func Endpoints(field string, cfgs []EndpointConfig, lookup func(string) (string, bool)) ([]Endpoint, error) {
	var errs []error
	bad := func(i int, sub, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s[%d].%s: %s", field, i, sub, fmt.Sprintf(format, a...)))
	}
	out := make([]Endpoint, 0, len(cfgs))
	seen := map[string]int{}
	types := store.EventTypes()
	for i, c := range cfgs {
		ep := Endpoint{URL: c.URL, Events: c.Events, Tenants: c.Tenants}
		if err := checkURL(c.URL); err != nil {
			bad(i, "url", "%v", err)
		} else if j, dup := seen[c.URL]; dup {
			bad(i, "url", "is also endpoint [%d]; give one endpoint each URL", j)
		}
		seen[c.URL] = i
		switch {
		case c.Secret != "" && c.SecretEnv != "":
			bad(i, "secret", "set secret or secret_env, not both")
		case c.Secret == "" && c.SecretEnv == "":
			bad(i, "secret", "required: whsec_<base64> (keygate webhooks secret makes one), or secret_env naming a variable that holds it")
		case c.Secret != "":
			s, err := ParseSecret(c.Secret)
			if err != nil {
				bad(i, "secret", "%v", err)
			}
			ep.Secret = s
		case !envNameRE.MatchString(c.SecretEnv):
			bad(i, "secret_env", "%q is not an environment variable name", c.SecretEnv)
		case lookup != nil:
			v, ok := lookup(c.SecretEnv)
			if !ok || v == "" {
				bad(i, "secret_env", "$%s is not set", c.SecretEnv)
				break
			}
			s, err := ParseSecret(v)
			if err != nil {
				bad(i, "secret_env", "$%s: %v", c.SecretEnv, err)
			}
			ep.Secret = s
		}
		for j, t := range c.Events {
			if !slices.Contains(types, t) {
				bad(i, fmt.Sprintf("events[%d]", j), "%q is not an event type (%s)", t, strings.Join(types, ", "))
			}
		}
		for j, t := range c.Tenants {
			if strings.TrimSpace(t) == "" {
				bad(i, fmt.Sprintf("tenants[%d]", j), "must not be empty")
			}
		}
		out = append(out, ep)
	}
	return out, errors.Join(errs...)
}

// checkURL accepts an absolute http or https URL with a host and no
// credentials, and no fragment: it is not sent, so the URL would not be
// the one called.
func checkURL(s string) error {
	u, err := httpurl.Parse(s)
	if err != nil {
		return err
	}
	if u.Fragment != "" {
		return fmt.Errorf("%q: a URL with a #fragment is not sent as written", s)
	}
	return nil
}

// site is an endpoint's URL as logs show it: scheme and host only, since
// paths and queries of some receivers hold secrets of their own.
func site(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Scheme + "://" + u.Host
}

// TypeTest is the type of the event `keygate webhooks test` sends.
const TypeTest = "webhook.test"

// payload is a webhook's body, as Standard Webhooks shapes it.
type payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      eventData `json:"data"`
}

// eventData is what an event says: the tenant, the key (as the admin API
// shows it: never its secret or hash) or grant, who did it and the
// event's details.
type eventData struct {
	Tenant    string           `json:"tenant"`
	Key       *admin.KeyView   `json:"key,omitempty"`
	Grant     *admin.GrantView `json:"grant,omitempty"`
	Actor     admin.ActorView  `json:"actor"`
	RequestID string           `json:"request_id,omitempty"`
	Details   map[string]any   `json:"details"`
}

// Payload is e as its webhook's body: {"type","timestamp","data"}. The
// same event always gives the same bytes.
func Payload(e store.Event) ([]byte, error) {
	d := eventData{Tenant: e.Tenant, Actor: admin.ActorView{Type: e.Actor.Type, Name: e.Actor.Name},
		RequestID: e.RequestID, Details: e.Details}
	if d.Details == nil {
		d.Details = map[string]any{}
	}
	if e.Key != nil {
		v := admin.ViewKey(*e.Key, e.At)
		d.Key = &v
	}
	if e.Grant != nil {
		v := admin.ViewGrant(*e.Grant)
		d.Grant = &v
	}
	b, err := json.Marshal(payload{Type: e.Type, Timestamp: e.At.UTC(), Data: d})
	if err != nil {
		return nil, fmt.Errorf("event %s: %w", e.ID, err)
	}
	return b, nil
}
