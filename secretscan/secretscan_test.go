package secretscan

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// github is a stand-in for GitHub: its own ECDSA P-256 key pairs, served
// from a local keys URL as GitHub serves them, signing messages as
// GitHub signs them.
type github struct {
	t       *testing.T
	signers map[string]*ecdsa.PrivateKey // by identifier
	srv     *httptest.Server
	reads   atomic.Int32
	down    atomic.Bool
}

func newGitHub(t *testing.T, ids ...string) *github {
	t.Helper()
	g := &github{t: t, signers: map[string]*ecdsa.PrivateKey{}}
	var doc keysDoc
	for _, id := range ids {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		g.signers[id] = priv
		doc.PublicKeys = append(doc.PublicKeys, struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
			IsCurrent     bool   `json:"is_current"`
		}{id, pemOf(t, &priv.PublicKey), true})
	}
	// A key of another kind: not a secret scanning key, left out.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	doc.PublicKeys = append(doc.PublicKeys, struct {
		KeyIdentifier string `json:"key_identifier"`
		Key           string `json:"key"`
		IsCurrent     bool   `json:"is_current"`
	}{"rsa-key", pemOf(t, &rsaKey.PublicKey), false})
	body, _ := json.Marshal(doc)
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.reads.Add(1)
		if g.down.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func pemOf(t *testing.T, pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// sign is the Github-Public-Key-Signature of body under key id.
func (g *github) sign(id string, body []byte) string {
	digest := sha256.Sum256(body)
	sig, err := ecdsa.SignASN1(rand.Reader, g.signers[id], digest[:])
	if err != nil {
		g.t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// fixture is the handler over a real SQLite key database and the admin
// service, as the server builds them.
type fixture struct {
	h   *Handler
	db  store.DB
	svc *admin.Service
	gh  *github
}

func newFixture(t *testing.T, action Action) fixture {
	t.Helper()
	db, err := store.Open(t.Context(), "sqlite:"+filepath.Join(t.TempDir(), "k.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	fs, _ := keys.NewFormats([]keys.Format{{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}, {Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true}})
	svc, err := admin.New(admin.Config{Formats: fs, Hasher: keys.NewHasher(nil), Plans: []string{"live", "test"},
		ValidScope: func(string) error { return nil }, Grace: time.Hour}, db)
	if err != nil {
		t.Fatal(err)
	}
	gh := newGitHub(t, "key-1", "key-2")
	h, err := New(Config{Formats: fs, Hasher: keys.NewHasher(nil), Action: action, KeysURL: gh.srv.URL + "/meta/public_keys/secret_scanning"},
		db, svc, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		t.Fatal(err)
	}
	return fixture{h: h, db: db, svc: svc, gh: gh}
}

// post sends body to the handler with the given signature headers.
func (f fixture) post(t *testing.T, body []byte, id, sig string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	if id != "" {
		r.Header.Set(HeaderKeyID, id)
	}
	if sig != "" {
		r.Header.Set(HeaderSignature, sig)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f fixture) create(t *testing.T, tenant string) admin.Created {
	t.Helper()
	c, err := f.svc.Create(t.Context(), admin.CreateRequest{Tenant: tenant, Env: keys.EnvLive})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func messageOf(t *testing.T, ms ...match) []byte {
	t.Helper()
	b, err := json.Marshal(ms)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (f fixture) leaks(t *testing.T) []store.AuditEvent {
	t.Helper()
	evs, err := f.db.AuditEvents(t.Context(), store.AuditFilter{Action: store.ActionKeyLeaked})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestReport: a live key is revoked and its leak recorded (by GitHub);
// an unknown well-formed key and garbage are false positives; GitHub's
// feedback names each token by its SHA-256.
func TestReport(t *testing.T) {
	f := newFixture(t, ActionRevoke)
	live := f.create(t, "acme")
	unknown, err := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
	if err != nil {
		t.Fatal(err)
	}
	badChecksum := live.Key[:len(live.Key)-1] + "x"
	if strings.HasSuffix(live.Key, "x") {
		badChecksum = live.Key[:len(live.Key)-1] + "y"
	}
	body := messageOf(t,
		match{Token: live.Key, Type: "keygate_live", URL: "https://github.com/acme/app/blob/abc/.env", Source: "content"},
		match{Token: unknown, Type: "keygate_live", URL: "https://github.com/x/y", Source: "commit"},
		match{Token: "sk_live_garbage", Type: "keygate_live", Source: "issue_comment"},
		match{Token: badChecksum, Type: "keygate_live"},
		match{Token: "", Type: "keygate_live"},
	)
	w := f.post(t, body, "key-2", f.gh.sign("key-2", body))
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var got []Feedback
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := []Feedback{
		{sha(live.Key), "keygate_live", labelTrue}, {sha(unknown), "keygate_live", labelFalse},
		{sha("sk_live_garbage"), "keygate_live", labelFalse}, {sha(badChecksum), "keygate_live", labelFalse},
		{sha(""), "keygate_live", labelFalse},
	}
	if len(got) != len(want) {
		t.Fatalf("feedback %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("feedback[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if strings.Contains(w.Body.String(), live.Key) {
		t.Error("the feedback holds a raw token")
	}
	rec, err := f.db.KeyByID(t.Context(), live.Record.ID)
	if err != nil || rec.RevokedAt.IsZero() {
		t.Fatalf("the live key is not revoked: %+v %v", rec, err)
	}
	evs, err := f.db.AuditEvents(t.Context(), store.AuditFilter{KeyID: live.Record.ID})
	if err != nil || len(evs) != 3 {
		t.Fatalf("events of the key: %+v %v", evs, err)
	}
	leak, revoke := evs[0], evs[1]
	github := store.Actor{Type: store.ActorGitHub, Name: "secret-scanning"}
	if leak.Action != store.ActionKeyLeaked || leak.Actor != github || leak.Details["url"] != "https://github.com/acme/app/blob/abc/.env" ||
		leak.Details["source"] != "content" || leak.Details["token_type"] != "keygate_live" {
		t.Errorf("leak event %+v", leak)
	}
	if revoke.Action != store.ActionKeyRevoked || revoke.Actor != github {
		t.Errorf("revoke event %+v", revoke)
	}
	// GitHub sends it again: still a true positive, the leak recorded
	// again, the key left revoked.
	w = f.post(t, body, "key-1", f.gh.sign("key-1", body))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), labelTrue) {
		t.Fatalf("again: %d %s", w.Code, w.Body)
	}
	if n := len(f.leaks(t)); n != 2 {
		t.Errorf("%d leak events after two reports", n)
	}
	if n := f.gh.reads.Load(); n != 1 {
		t.Errorf("GitHub's keys read %d times for two messages with known identifiers", n)
	}
}

// TestNotify: with action notify the key keeps working; the leak is
// recorded all the same.
func TestNotify(t *testing.T) {
	f := newFixture(t, ActionNotify)
	live := f.create(t, "acme")
	body := messageOf(t, match{Token: live.Key, Type: "keygate_live", URL: "https://gist.github.com/x", Source: "gist_content"})
	w := f.post(t, body, "key-1", f.gh.sign("key-1", body))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), labelTrue) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if rec, _ := f.db.KeyByID(t.Context(), live.Record.ID); !rec.RevokedAt.IsZero() {
		t.Error("notify revoked the key")
	}
	if n := len(f.leaks(t)); n != 1 {
		t.Errorf("%d leak events", n)
	}
}

// TestRefused: a message that is not GitHub's is 401 and does nothing;
// one GitHub's keys cannot be read for is 503 and does nothing.
func TestRefused(t *testing.T) {
	f := newFixture(t, ActionRevoke)
	live := f.create(t, "acme")
	body := messageOf(t, match{Token: live.Key, Type: "keygate_live", Source: "content"})
	other := messageOf(t, match{Token: "sk_live_other", Type: "keygate_live"})
	stranger, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(body)
	strangerSig, _ := ecdsa.SignASN1(rand.Reader, stranger, digest[:])
	for _, c := range []struct {
		name, id, sig string
		status        int
		says          string
	}{
		{"no headers", "", "", 401, "are required"},
		{"no signature", "key-1", "", 401, "are required"},
		{"no identifier", "", f.gh.sign("key-1", body), 401, "are required"},
		{"signature of another body", "key-1", f.gh.sign("key-1", other), 401, "does not match"},
		{"signed by the other key", "key-1", f.gh.sign("key-2", body), 401, "does not match"},
		{"signed by a stranger", "key-1", base64.StdEncoding.EncodeToString(strangerSig), 401, "does not match"},
		{"unknown identifier", "key-9", f.gh.sign("key-1", body), 401, "is not one of GitHub's"},
		{"the RSA key's identifier", "rsa-key", f.gh.sign("key-1", body), 401, "is not one of GitHub's"},
		{"signature not base64", "key-1", "%%%", 401, "not base64"},
		{"signature not DER", "key-1", base64.StdEncoding.EncodeToString([]byte("not a signature")), 401, "does not match"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := f.post(t, body, c.id, c.sig)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.says) {
				t.Errorf("%d %s, want %d saying %q", w.Code, w.Body, c.status, c.says)
			}
		})
	}
	if rec, _ := f.db.KeyByID(t.Context(), live.Record.ID); !rec.RevokedAt.IsZero() {
		t.Fatal("a refused message revoked the key")
	}
	if n := len(f.leaks(t)); n != 0 {
		t.Fatalf("a refused message recorded %d leaks", n)
	}
	// Unknown identifiers read the keys again at most once per
	// refetchEvery: made-up ones cannot make Keygate hammer GitHub.
	if n := f.gh.reads.Load(); n != 1 {
		t.Errorf("GitHub's keys read %d times, want 1", n)
	}
	f.h.keys.now = func() time.Time { return time.Now().Add(refetchEvery) }
	f.post(t, body, "key-9", f.gh.sign("key-1", body))
	if n := f.gh.reads.Load(); n != 2 {
		t.Errorf("GitHub's keys read %d times after refetchEvery, want 2", n)
	}

	// GitHub's keys cannot be read: 503, nothing done, then fine again.
	fresh := newFixture(t, ActionRevoke)
	k := fresh.create(t, "acme")
	msg := messageOf(t, match{Token: k.Key, Type: "keygate_live"})
	fresh.gh.down.Store(true)
	if w := fresh.post(t, msg, "key-1", fresh.gh.sign("key-1", msg)); w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("keys down: %d %s", w.Code, w.Body)
	}
	if rec, _ := fresh.db.KeyByID(t.Context(), k.Record.ID); !rec.RevokedAt.IsZero() {
		t.Fatal("an unverified message revoked the key")
	}
	fresh.gh.down.Store(false)
	fresh.h.keys.now = func() time.Time { return time.Now().Add(refetchEvery) }
	if w := fresh.post(t, msg, "key-1", fresh.gh.sign("key-1", msg)); w.Code != http.StatusOK {
		t.Errorf("keys back: %d %s", w.Code, w.Body)
	}
}

// TestBadRequests: the wrong method, a body that is too large, and a
// signed body that is not the expected JSON.
func TestBadRequests(t *testing.T) {
	f := newFixture(t, ActionRevoke)
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, Path, nil))
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET: %d %v", w.Code, w.Header())
	}
	big := bytes.Repeat([]byte(" "), maxBody+1)
	if w := f.post(t, big, "key-1", f.gh.sign("key-1", big)); w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("too large: %d", w.Code)
	}
	for _, body := range []string{`{"token":"x"}`, `not json`, `[{"token": 5}]`} {
		if w := f.post(t, []byte(body), "key-1", f.gh.sign("key-1", []byte(body))); w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %s", body, w.Code, w.Body)
		}
	}
	if w := f.post(t, []byte(`[]`), "key-1", f.gh.sign("key-1", []byte(`[]`))); w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != "[]" {
		t.Errorf("empty list: %d %s", w.Code, w.Body)
	}
}

func TestConfig(t *testing.T) {
	f := newFixture(t, ActionRevoke)
	fs, _ := keys.NewFormats([]keys.Format{{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}})
	for _, c := range []struct {
		name   string
		action Action
		url    string
		err    string
	}{
		{"defaults", "", "", ""},
		{"notify", ActionNotify, "https://keys.example/x", ""},
		{"loopback http", "", "http://127.0.0.1:8080/keys", ""},
		{"bad action", "delete", "", `secret_scanning.action: "delete" is not revoke or notify`},
		{"http elsewhere", "", "http://keys.example/x", "must be read over https"},
		{"relative", "", "/keys", "not an absolute URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := New(Config{Formats: fs, Hasher: keys.NewHasher(nil), Action: c.action, KeysURL: c.url}, f.db, f.svc, slog.New(slog.DiscardHandler))
			switch {
			case c.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.err == "" && c.url == "" && h.cfg.KeysURL != DefaultKeysURL:
				t.Errorf("keys URL %s", h.cfg.KeysURL)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Errorf("New = %v, want %q", err, c.err)
			}
		})
	}
	if _, err := New(Config{Formats: fs, Hasher: keys.NewHasher(nil)}, nil, f.svc, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("accepted without a database")
	}
}

func TestRequestID(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""}, {"C0A8:1F2E:3B4C5D:6E7F", "C0A8:1F2E:3B4C5D:6E7F"}, {"a b", ""}, {"x\ny", ""}, {strings.Repeat("a", 129), ""},
	} {
		r := httptest.NewRequest(http.MethodPost, Path, nil)
		r.Header["X-Github-Request-Id"] = []string{c.in}
		if got := requestID(r); got != c.want {
			t.Errorf("requestID(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
