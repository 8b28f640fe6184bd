package events

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/testpg"
	"github.com/keygate/keygate/keys"
	"github.com/keygate/keygate/store"
)

// testSecret is the receivers' signing secret (32 bytes of 0x01..0x20).
const testSecret = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

// receiver is a webhook endpoint over real HTTP that checks every
// request with the Standard Webhooks reference library (not Keygate's
// signer) and remembers what it took.
type receiver struct {
	t   *testing.T
	wh  *standardwebhooks.Webhook
	srv *httptest.Server

	down atomic.Int32 // the status to refuse with (503, 410, …); 0: up
	hang atomic.Bool  // hold each request until its client gives up

	mu       sync.Mutex
	took     []took         // in order of arrival
	count    map[string]int // taken, by webhook-id
	refused  map[string]int // refused while down, by webhook-id
	arrivals atomic.Int64
}

type took struct {
	id, typ string
	body    map[string]any
	raw     []byte
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, wh: wh, count: map[string]int{}, refused: map[string]int{}}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/hook" }

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.arrivals.Add(1)
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.t.Errorf("webhook %s does not verify: %v", req.Header.Get(HeaderID), err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	id := req.Header.Get(HeaderID)
	if r.hang.Load() {
		<-req.Context().Done()
		return
	}
	if code := r.down.Load(); code != 0 {
		r.mu.Lock()
		r.refused[id]++
		r.mu.Unlock()
		w.Header().Set("Retry-After", "0")
		http.Error(w, "down for maintenance", int(code))
		return
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		r.t.Errorf("webhook %s: body is not JSON: %v", id, err)
	}
	r.mu.Lock()
	r.took = append(r.took, took{id: id, typ: p["type"].(string), body: p, raw: body})
	r.count[id]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// snapshot returns what the receiver took, in order.
func (r *receiver) snapshot() []took {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]took(nil), r.took...)
}

// types counts what was taken by event type.
func (r *receiver) types() map[string]int {
	out := map[string]int{}
	for _, t := range r.snapshot() {
		out[t.typ]++
	}
	return out
}

// eventually polls cond until it holds, failing the test after 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// settle waits until each publisher has made 5 more delivery passes and,
// where it scans, 2 more expiry scans: whatever they would still send is
// sent by then.
func settle(t *testing.T, ps ...*Publisher) {
	t.Helper()
	type mark struct{ passes, scans uint64 }
	marks := make([]mark, len(ps))
	for i, p := range ps {
		marks[i] = mark{p.passes.Load(), p.scans.Load()}
	}
	eventually(t, "more passes and scans", func() bool {
		for i, p := range ps {
			if p.passes.Load() < marks[i].passes+5 || p.expiring && p.scans.Load() < marks[i].scans+2 {
				return false
			}
		}
		return true
	})
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openSQLite(t *testing.T) store.DB {
	t.Helper()
	return openDB(t, "sqlite:"+filepath.Join(t.TempDir(), "keygate.db"))
}

func openPG(t *testing.T) string {
	t.Helper()
	return testpg.NewSchema(t, testpg.SharedURL())
}

func openDB(t *testing.T, url string) store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), url, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

// endpoint is an endpoint config for the receiver.
func (r *receiver) endpoint(t *testing.T, types ...string) Endpoint {
	t.Helper()
	s, err := ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return Endpoint{URL: r.url(), Secret: s, Events: types}
}

// fastConfig retries quickly, so that the tests wait milliseconds, not
// minutes.
func fastConfig(eps ...Endpoint) Config {
	return Config{Endpoints: eps, MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, ScanInterval: 50 * time.Millisecond, Timeout: 2 * time.Second}
}

// running is a Publisher running until the test ends or stop is called.
type running struct {
	*Publisher
	stop func()
}

func start(t *testing.T, cfg Config, db store.DB) running {
	t.Helper()
	p, err := New(cfg, db, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return running{p, stop}
}

// newAdmin is the key lifecycle service over db, with the default key
// formats, as the server builds it.
func newAdmin(t *testing.T, db store.DB) *admin.Service {
	t.Helper()
	fs, err := keys.NewFormats([]keys.Format{{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true}, {Prefix: "sk_test_", Env: keys.EnvTest, Checksum: true}})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := admin.New(admin.Config{Formats: fs, Hasher: keys.NewHasher(nil), Plans: []string{"live", "test"},
		ValidScope: func(string) error { return nil }, Grace: time.Hour}, db)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// asCI is a context whose changes are made by the admin token "ci".
func asCI(t *testing.T) context.Context {
	return admin.WithCaller(t.Context(), admin.Principal{Actor: store.Actor{Type: store.ActorAdminToken, Name: "ci"}, Role: admin.RoleAdmin},
		"203.0.113.5", "req-42")
}
