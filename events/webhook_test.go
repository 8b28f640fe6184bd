package events

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

func TestParseSecret(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)) }
	for _, c := range []struct {
		name, in, err string
	}{
		{"32 bytes", "whsec_" + b64(32), ""},
		{"24 bytes, the least", "whsec_" + b64(24), ""},
		{"64 bytes, the most", "whsec_" + b64(64), ""},
		{"spaces around", "  whsec_" + b64(32) + "\n", ""},
		{"no prefix", b64(32), "must start with whsec_"},
		{"other prefix", "whsk_" + b64(32), "must start with whsec_"},
		{"not base64", "whsec_not*base64", "not base64"},
		{"url alphabet", "whsec_" + strings.Repeat("-_", 22), "not base64"},
		{"too short", "whsec_" + b64(23), "holds 23 bytes"},
		{"too long", "whsec_" + b64(65), "holds 65 bytes"},
		{"empty", "", "must start with whsec_"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSecret(c.in)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Errorf("ParseSecret(%q) = %v, want %q", c.in, err, c.err)
			}
		})
	}
}

// TestSecretNeverShown: a secret prints and logs as whsec_…, however it
// is formatted, and an error about one does not quote it.
func TestSecretNeverShown(t *testing.T) {
	raw, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseSecret(raw)
	if err != nil {
		t.Fatal(err)
	}
	ep := Endpoint{URL: "https://hooks.example/x", Secret: s}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("endpoint", "secret", s, "endpoint", ep)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", ep, ep, ep, s), logged.String()} {
		if strings.Contains(out, raw[len(SecretPrefix):]) || strings.Contains(out, raw[len(SecretPrefix):len(SecretPrefix)+8]) {
			t.Errorf("the secret shows in %q", out)
		}
	}
	_, err = Endpoints("webhooks.endpoints", []EndpointConfig{{URL: "https://x.example", Secret: raw + "!"}}, nil)
	if err == nil || strings.Contains(err.Error(), raw[len(SecretPrefix):len(SecretPrefix)+8]) {
		t.Errorf("error about a bad secret: %v", err)
	}
}

// TestSignStandardWebhooks: Sign's header verifies with the Standard
// Webhooks reference library, and fails it for any change of id,
// timestamp, body or secret.
func TestSignStandardWebhooks(t *testing.T) {
	s, _ := ParseSecret(testSecret)
	other, _ := ParseSecret("whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 32)))
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"type":"key.revoked","timestamp":"2026-05-01T10:00:00Z","data":{"tenant":"acme"}}`)
	now := time.Now().Unix()
	headers := func(id string, ts int64, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		h.Set(HeaderSignature, sig)
		return h
	}
	if err := wh.Verify(body, headers("evt_1", now, s.Sign("evt_1", now, body))); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	for _, c := range []struct {
		name string
		h    http.Header
		body []byte
	}{
		{"other id", headers("evt_2", now, s.Sign("evt_1", now, body)), body},
		{"other timestamp", headers("evt_1", now+1, s.Sign("evt_1", now, body)), body},
		{"other body", headers("evt_1", now, s.Sign("evt_1", now, body)), append(bytes.Clone(body), ' ')},
		{"other secret", headers("evt_1", now, other.Sign("evt_1", now, body)), body},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := wh.Verify(c.body, c.h); err == nil {
				t.Error("verified")
			}
		})
	}
	if sig := s.Sign("evt_1", now, body); !strings.HasPrefix(sig, "v1,") || len(sig) != 3+44 {
		t.Errorf("signature %q is not v1,<base64 of 32 bytes>", sig)
	}
}

func TestEndpoints(t *testing.T) {
	good := "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	env := map[string]string{"HOOK_SECRET": good, "BAD_SECRET": "whsec_short", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, c := range []struct {
		name string
		in   EndpointConfig
		err  string // "" : accepted
	}{
		{"secret inline", EndpointConfig{URL: "https://hooks.example/k", Secret: good}, ""},
		{"secret from env", EndpointConfig{URL: "https://hooks.example/k", SecretEnv: "HOOK_SECRET"}, ""},
		{"filters", EndpointConfig{URL: "http://10.0.0.1:8080/k", Secret: good, Events: []string{"key.revoked", "key.leaked"}, Tenants: []string{"acme"}}, ""},
		{"no url", EndpointConfig{Secret: good}, "[0].url: required"},
		{"ftp", EndpointConfig{URL: "ftp://x.example/", Secret: good}, "scheme must be https"},
		{"relative", EndpointConfig{URL: "/hooks", Secret: good}, "scheme must be https"},
		{"credentials", EndpointConfig{URL: "https://user:pw@x.example/", Secret: good}, "must not hold credentials"},
		{"fragment", EndpointConfig{URL: "https://x.example/#a", Secret: good}, "#fragment"},
		{"no secret", EndpointConfig{URL: "https://x.example/"}, "[0].secret: required"},
		{"both secrets", EndpointConfig{URL: "https://x.example/", Secret: good, SecretEnv: "HOOK_SECRET"}, "not both"},
		{"bad secret", EndpointConfig{URL: "https://x.example/", Secret: "hunter2"}, "[0].secret: must start with whsec_"},
		{"env unset", EndpointConfig{URL: "https://x.example/", SecretEnv: "NOPE"}, "$NOPE is not set"},
		{"env empty", EndpointConfig{URL: "https://x.example/", SecretEnv: "EMPTY"}, "$EMPTY is not set"},
		{"env bad", EndpointConfig{URL: "https://x.example/", SecretEnv: "BAD_SECRET"}, "$BAD_SECRET: the part after whsec_ is not base64"},
		{"env name", EndpointConfig{URL: "https://x.example/", SecretEnv: "1 BAD"}, "not an environment variable name"},
		{"unknown type", EndpointConfig{URL: "https://x.example/", Secret: good, Events: []string{"key.deleted"}}, `events[0]: "key.deleted" is not an event type`},
		{"empty tenant", EndpointConfig{URL: "https://x.example/", Secret: good, Tenants: []string{" "}}, "tenants[0]: must not be empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			eps, err := Endpoints("webhooks.endpoints", []EndpointConfig{c.in}, lookup)
			if c.err == "" {
				if err != nil || len(eps) != 1 || len(eps[0].Secret.key) != 32 {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.HasPrefix(err.Error(), "webhooks.endpoints[0].") {
				t.Errorf("error %v, want one naming webhooks.endpoints[0] and saying %q", err, c.err)
			}
		})
	}
	// Without a lookup (config validation) secret_env is only checked for
	// its name; twice the same URL is refused.
	if _, err := Endpoints("webhooks.endpoints", []EndpointConfig{{URL: "https://x.example/", SecretEnv: "NOPE"}}, nil); err != nil {
		t.Errorf("secret_env checked against the environment without a lookup: %v", err)
	}
	_, err := Endpoints("webhooks.endpoints", []EndpointConfig{{URL: "https://x.example/", Secret: good}, {URL: "https://x.example/", Secret: good}}, nil)
	if err == nil || !strings.Contains(err.Error(), "[1].url: is also endpoint [0]") {
		t.Errorf("duplicate URL: %v", err)
	}
}

func TestExpiryNotice(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	before := []time.Duration{24 * time.Hour, 7 * 24 * time.Hour}
	for _, c := range []struct {
		name     string
		expires  time.Duration // from now; 0: never
		revoked  bool
		typ      string // "": no notice
		before   string
		replaced bool
	}{
		{"in 12h: the 1d notice only", 12 * time.Hour, false, store.EventKeyExpiring, "1d", false},
		{"in exactly 1d", 24 * time.Hour, false, store.EventKeyExpiring, "1d", false},
		{"in 5d: the 7d notice", 5 * 24 * time.Hour, false, store.EventKeyExpiring, "7d", false},
		{"in 8d: none yet", 8 * 24 * time.Hour, false, "", "", false},
		{"a minute ago: expired", -time.Minute, false, store.EventKeyExpired, "", false},
		{"never expires", 0, false, "", "", false},
		{"revoked", time.Hour, true, "", "", false},
		{"a roll's grace", time.Hour, false, store.EventKeyExpiring, "1d", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := keys.Record{ID: "key_1", Tenant: "acme", Hash: keys.Hash{9}}
			if c.expires != 0 {
				r.ExpiresAt = now.Add(c.expires)
			}
			if c.revoked {
				r.RevokedAt = now.Add(-time.Hour)
			}
			if c.replaced {
				r.ReplacedBy, r.RolledAt = "key_2", now
			}
			e, ok := expiryNotice(r, now, before)
			if !ok {
				if c.typ != "" {
					t.Fatalf("no notice, want %s", c.typ)
				}
				return
			}
			if e.Type != c.typ || (c.before != "" && e.Details["before"] != c.before) || e.Key.Hash != (keys.Hash{}) {
				t.Fatalf("notice %+v, want %s before %s", e, c.typ, c.before)
			}
			if _, ok := e.Details["replaced_by"]; ok != c.replaced {
				t.Errorf("replaced_by in details: %v", e.Details)
			}
			// The same expiry gives the same dedupe; another expiry another.
			again, _ := expiryNotice(r, now.Add(time.Minute), before)
			if again.Type == e.Type && again.Details["before"] == e.Details["before"] && again.Dedupe != e.Dedupe {
				t.Errorf("dedupe moved with time: %s, %s", e.Dedupe, again.Dedupe)
			}
			r.ExpiresAt = r.ExpiresAt.Add(time.Second)
			if moved, _ := expiryNotice(r, now, before); moved.Dedupe == e.Dedupe {
				t.Errorf("a new expiry kept the dedupe %s", e.Dedupe)
			}
		})
	}
}

// TestBackoff: doubling from MinBackoff, capped at MaxBackoff, within
// ±20%, for any attempt number.
func TestBackoff(t *testing.T) {
	p := &Publisher{cfg: Config{MinBackoff: 5 * time.Second, MaxBackoff: time.Hour}}
	for n := 1; n <= 100; n++ {
		want := min(5*time.Second<<min(n-1, 20), time.Hour)
		for range 20 {
			if got := p.backoff(n); got < want*8/10 || got > want*12/10 {
				t.Fatalf("backoff(%d) = %v, want %v ±20%%", n, got, want)
			}
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"120", 2 * time.Minute}, {" 5 ", 5 * time.Second}, {"0", 0}, {"-3", 0}, {"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(c.in, now); got != c.want {
			t.Errorf("retryAfter(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"defaults", Config{}, ""},
		{"negative max_age", Config{MaxAge: -1}, "webhooks.max_age: must not be negative"},
		{"timeout too long", Config{Timeout: time.Hour}, "webhooks.timeout: at most 5m"},
		{"min over max", Config{MinBackoff: time.Hour, MaxBackoff: time.Minute}, "webhooks.min_backoff"},
		{"concurrency", Config{Concurrency: 1000}, "webhooks.concurrency: must be from 1 to 256"},
		{"zero threshold", Config{ExpiringBefore: []time.Duration{0}}, "events.expiring_before[0]: must be from 1s to 366d"},
		{"twice", Config{ExpiringBefore: []time.Duration{time.Hour, time.Hour}}, "events.expiring_before[1]: 1h0m0s is listed twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Errorf("Validate = %v, want %q", err, c.err)
			}
		})
	}
}

// FuzzParseSecret: a secret is accepted only as whsec_ and the standard
// base64 of 24 to 64 bytes, and what it signs with is exactly those bytes.
func FuzzParseSecret(f *testing.F) {
	f.Add(testSecret)
	f.Add("whsec_")
	f.Add("whsec_====")
	f.Add("whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 24)))
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSecret(in)
		if err != nil {
			return
		}
		if n := len(s.key); n < minSecretBytes || n > maxSecretBytes {
			t.Fatalf("accepted %d bytes", n)
		}
		if got := SecretPrefix + base64.StdEncoding.EncodeToString(s.key); got != strings.TrimSpace(in) {
			t.Fatalf("%q read as %q", in, got)
		}
	})
}
