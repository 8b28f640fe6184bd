package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"github.com/keygate/keygate/internal/testrun"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/store"
)

const testSecret = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

// hooks is a webhook receiver that verifies every request with the
// Standard Webhooks reference library.
type hooks struct {
	mu   sync.Mutex
	got  []map[string]any
	bad  []string
	srv  *httptest.Server
	wh   *standardwebhooks.Webhook
	seen map[string]int
}

func newHooks(t *testing.T) *hooks {
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := &hooks{wh: wh, seen: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := h.wh.Verify(body, r.Header); err != nil {
			h.bad = append(h.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p map[string]any
		json.Unmarshal(body, &p)
		h.got = append(h.got, p)
		h.seen[r.Header.Get("webhook-id")]++
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// ofType returns the payloads of one type received so far.
func (h *hooks) ofType(typ string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, p := range h.got {
		if p["type"] == typ {
			out = append(out, p)
		}
	}
	return out
}

// gitHub serves a key document with one ECDSA P-256 key of the test's own.
type gitHub struct {
	priv *ecdsa.PrivateKey
	srv  *httptest.Server
}

func newGitHub(t *testing.T) *gitHub {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	doc, _ := json.Marshal(map[string]any{"public_keys": []map[string]any{{
		"key_identifier": "test-key", "key": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), "is_current": true,
	}}})
	g := &gitHub{priv: priv}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(doc) }))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *gitHub) report(t *testing.T, portal, token string) []map[string]string {
	t.Helper()
	body, _ := json.Marshal([]map[string]string{{"token": token, "type": "keygate_live", "url": "https://github.com/acme/app/blob/main/.env", "source": "content"}})
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, g.priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+portal+"/secret-scanning/github", bytes.NewReader(body))
	req.Header.Set("Github-Public-Key-Identifier", "test-key")
	req.Header.Set("Github-Public-Key-Signature", base64.StdEncoding.EncodeToString(sig))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var fb []map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&fb); err != nil || resp.StatusCode != 200 {
		t.Fatalf("secret scanning answered %d: %v", resp.StatusCode, err)
	}
	return fb
}

func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEventsEndToEnd runs the whole server: a key created through the
// admin API is told to the receiver; its 429s are told once per window;
// GitHub reports it on the portal listener and it is revoked — Check
// refuses it within a second — and the receiver hears of the revocation
// (by GitHub) and the leak.
func TestEventsEndToEnd(t *testing.T) {
	rc, gh := newHooks(t), newGitHub(t)
	dbPath := filepath.Join(t.TempDir(), "keygate.db")
	cfg := config.Default()
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.Portal.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.Database.URL = "sqlite:" + dbPath
	cfg.Database.PollInterval = 100 * time.Millisecond
	cfg.Admin.Token = "admin-token-for-tests"
	cfg.DefaultRoute = &config.Route{Scopes: []string{}}
	cfg.Plans = map[string][]config.Window{"live": {{Limit: 3, Period: time.Hour}}, "test": {{Limit: 3, Period: time.Hour}}}
	cfg.Webhooks.Endpoints = []config.WebhookEndpoint{{URL: rc.srv.URL, SecretEnv: "KEYGATE_TEST_WEBHOOK_SECRET"}}
	t.Setenv("KEYGATE_TEST_WEBHOOK_SECRET", testSecret)
	cfg.SecretScanning.Enabled = true
	cfg.SecretScanning.GitHub.KeysURL = gh.srv.URL + "/meta/public_keys/secret_scanning"
	srv, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	stop := testrun.Start(t, srv, 30*time.Second)
	_, ha := srv.Addrs()
	httpAddr := ha.String()
	portal := srv.PortalAddr().String()

	// A key, through the admin API.
	req, _ := http.NewRequest(http.MethodPost, "http://"+httpAddr+"/admin/v1/keys", strings.NewReader(`{"tenant":"acme","env":"live"}`))
	req.Header.Set("Authorization", "Bearer "+cfg.Admin.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ ID, Key string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK || created.Key == "" {
		t.Fatalf("creating a key: %d %+v", resp.StatusCode, created)
	}
	check := func() int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+"/authz/api/v1/things", nil)
		req.Header.Set("Authorization", "Bearer "+created.Key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	codes := map[int]int{}
	for range 8 {
		codes[check()]++
	}
	if codes[200] != 3 || codes[429] != 5 {
		t.Fatalf("checks answered %v, want 3 allowed and 5 limited", codes)
	}
	waitUntil(t, "key.created and key.rate_limited", 20*time.Second, func() bool {
		return len(rc.ofType("key.created")) == 1 && len(rc.ofType("key.rate_limited")) == 1
	})

	// GitHub finds the key.
	fb := gh.report(t, portal, created.Key)
	if len(fb) != 1 || fb[0]["label"] != "true_positive" {
		t.Fatalf("feedback %v", fb)
	}
	waitUntil(t, "Check refuses the leaked key", time.Second, func() bool { return check() == http.StatusUnauthorized })
	waitUntil(t, "key.revoked and key.leaked", 20*time.Second, func() bool {
		return len(rc.ofType("key.revoked")) == 1 && len(rc.ofType("key.leaked")) == 1
	})
	for _, typ := range []string{"key.revoked", "key.leaked"} {
		data := rc.ofType(typ)[0]["data"].(map[string]any)
		if actor := data["actor"].(map[string]any); actor["type"] != store.ActorGitHub {
			t.Errorf("%s by %v, want github", typ, actor)
		}
	}
	// The receiver has answered; the sender records the delivery just
	// after. A stop before that would leave it pending, to be sent again
	// by the next server: at least once, as designed, but not this test's
	// question.
	db, err := store.Open(t.Context(), "sqlite:"+dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitUntil(t, "every delivery recorded", 10*time.Second, func() bool {
		ds, err := db.Deliveries(t.Context(), store.DeliveryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			if d.Status != store.DeliveryDelivered {
				return false
			}
		}
		return len(ds) == 4
	})
	stop() // Run's error, if any, is reported at the test's end

	// After the stop: one key.rate_limited event in the outbox for the
	// five 429s, every event delivered once, every signature good.
	ds, err := db.Deliveries(t.Context(), store.DeliveryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	perType := map[string]int{}
	for _, d := range ds {
		perType[d.Event.Type]++
		if d.Status != store.DeliveryDelivered {
			t.Errorf("%s %s: %s", d.Event.Type, d.Event.ID, d.Status)
		}
	}
	if want := map[string]int{"key.created": 1, "key.rate_limited": 1, "key.revoked": 1, "key.leaked": 1}; fmt.Sprint(perType) != fmt.Sprint(want) {
		t.Errorf("deliveries by type %v, want %v", perType, want)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		t.Errorf("signatures that did not verify: %v", rc.bad)
	}
	for id, n := range rc.seen {
		if n != 1 {
			t.Errorf("%s received %d times", id, n)
		}
	}
}
