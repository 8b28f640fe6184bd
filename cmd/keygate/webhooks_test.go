package main

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// hookSecret signs the process tests' webhooks.
const hookSecret = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="

// hookReceiver takes webhooks verified with the Standard Webhooks
// reference library, refusing them (503) while down.
type hookReceiver struct {
	srv     *httptest.Server
	down    atomic.Bool
	mu      sync.Mutex
	refused map[string]int // by webhook-id
	taken   map[string]int
	bad     []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	wh, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{refused: map[string]int{}, taken: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := wh.Verify(body, r.Header); err != nil {
			h.bad = append(h.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id")
		if h.down.Load() {
			h.refused[id]++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		h.taken[id]++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) counts() (refused, taken map[string]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.refused), maps.Clone(h.taken)
}

// TestWebhooksSurviveSIGTERM: keys changed with the CLI while the
// endpoint is down are retried by the server under their webhook-ids;
// SIGTERM in the middle of the retries loses none (keygate webhooks
// deliveries lists them pending); the next server, with the endpoint up,
// delivers each once under the same id.
func TestWebhooksSurviveSIGTERM(t *testing.T) {
	rc := newHookReceiver(t)
	rc.down.Store(true)
	env := map[string]string{
		"KEYGATE_DATABASE_URL":           "sqlite:" + filepath.Join(t.TempDir(), "keygate.db"),
		"KEYGATE_DATABASE_POLL_INTERVAL": "100ms",
		"KEYGATE_WEBHOOKS_ENDPOINTS":     `[{url: "` + rc.srv.URL + `/hook", secret_env: KEYGATE_TEST_HOOK_SECRET}]`,
		"KEYGATE_TEST_HOOK_SECRET":       hookSecret,
		"KEYGATE_WEBHOOKS_MIN_BACKOFF":   "50ms",
		"KEYGATE_WEBHOOKS_MAX_BACKOFF":   "200ms",
		"KEYGATE_LOG_LEVEL":              "debug",
	}
	cliProc(t, env, "migrate")
	p := startProc(t, env)
	for _, tenant := range []string{"acme", "globex", "initech"} {
		createKeyProc(t, env, "--tenant", tenant, "--env", "live")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		refused, _ := rc.counts()
		if len(refused) == 3 && !slices.ContainsFunc(slices.Collect(maps.Values(refused)), func(n int) bool { return n < 2 }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every event retried twice: %v", refused)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("keygate exited with %v after SIGTERM:\n%s", err, p.logs.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("keygate did not exit after SIGTERM")
	}
	if strings.Contains(p.logs.String(), hookSecret[len("whsec_"):]) {
		t.Fatal("the webhook secret is in the logs")
	}

	var pending []struct {
		EventID  string `json:"event_id"`
		Type     string `json:"type"`
		Status   string `json:"status"`
		Attempts int    `json:"attempts"`
		LastCode int    `json:"last_code"`
	}
	if err := json.Unmarshal([]byte(cliProc(t, env, "webhooks", "deliveries", "--pending", "--json")), &pending); err != nil {
		t.Fatal(err)
	}
	refused, taken := rc.counts()
	if len(pending) != 3 || len(taken) != 0 {
		t.Fatalf("after SIGTERM: pending %+v, taken %v", pending, taken)
	}
	for _, d := range pending {
		if d.Type != "key.created" || d.Attempts < 2 || refused[d.EventID] < 2 {
			t.Errorf("pending delivery %+v (refused %d times)", d, refused[d.EventID])
		}
	}

	rc.down.Store(false)
	startProc(t, env)
	deadline = time.Now().Add(30 * time.Second)
	for {
		if _, taken := rc.counts(); len(taken) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every event delivered after the restart: %v", taken)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var all []struct {
		EventID string `json:"event_id"`
		Status  string `json:"status"`
	}
	for deadline = time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		all = all[:0]
		if err := json.Unmarshal([]byte(cliProc(t, env, "webhooks", "deliveries", "--json")), &all); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(all, func(d struct {
			EventID string `json:"event_id"`
			Status  string `json:"status"`
		}) bool {
			return d.Status != "delivered"
		}) || time.Now().After(deadline) {
			break
		}
	}
	refused, taken = rc.counts()
	if got, want := slices.Sorted(maps.Keys(taken)), slices.Sorted(maps.Keys(refused)); !slices.Equal(got, want) {
		t.Errorf("ids taken %v, refused before %v", got, want)
	}
	for id, n := range taken {
		if n != 1 {
			t.Errorf("%s taken %d times", id, n)
		}
	}
	for _, d := range all {
		if d.Status != "delivered" {
			t.Errorf("delivery %+v", d)
		}
	}
	if len(rc.bad) > 0 {
		t.Errorf("signatures that did not verify: %v", rc.bad)
	}
}

// TestWebhooksCommands: deliveries' and test's errors and output, and
// the secret and pattern commands.
func TestWebhooksCommands(t *testing.T) {
	rc := newHookReceiver(t)
	dir := t.TempDir()
	env := map[string]string{
		"KEYGATE_DATABASE_URL":       "sqlite:" + filepath.Join(dir, "keygate.db"),
		"KEYGATE_WEBHOOKS_ENDPOINTS": `[{url: "` + rc.srv.URL + `/hook", secret: "` + hookSecret + `"}]`,
	}
	cliProc(t, env, "migrate")
	if out := cliProc(t, env, "webhooks", "test", rc.srv.URL+"/hook"); !strings.Contains(out, "answered 204") {
		t.Errorf("webhooks test: %s", out)
	}
	if _, taken := rc.counts(); len(taken) != 1 {
		t.Errorf("the test event was not taken: %v", taken)
	}
	if out := cliProc(t, env, "webhooks", "deliveries"); !strings.HasPrefix(out, "EVENT") {
		t.Errorf("webhooks deliveries: %q", out)
	}
	secret := strings.TrimSpace(cliProc(t, env, "webhooks", "secret"))
	if _, err := standardwebhooks.NewWebhook(secret); err != nil || !strings.HasPrefix(secret, "whsec_") || len(secret) != len(hookSecret) {
		t.Errorf("webhooks secret printed %q: %v", secret, err)
	}
	var patterns []struct{ Prefix, Pattern string }
	if err := json.Unmarshal([]byte(cliProc(t, env, "secret-scanning", "pattern", "--json")), &patterns); err != nil || len(patterns) != 2 ||
		patterns[0].Pattern != "sk_live_[0-9A-Za-z]{38}" {
		t.Errorf("secret-scanning pattern --json: %+v %v", patterns, err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		says string
	}{
		{"test an unknown endpoint", []string{"webhooks", "test", "https://elsewhere.example/x"}, 2, "is not one of webhooks.endpoints (configured: " + rc.srv.URL + "/hook)"},
		{"test without a URL", []string{"webhooks", "test"}, 2, "need exactly one argument"},
		{"both filters", []string{"webhooks", "deliveries", "--failed", "--pending"}, 2, "exclude each other"},
		{"bad limit", []string{"webhooks", "deliveries", "--limit", "0"}, 2, "--limit: must be from 1 to 1000"},
		{"bad cursor", []string{"webhooks", "deliveries", "--after", "x"}, 2, `--after: "x" is not an event id`},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut strings.Builder
			err := run(t.Context(), c.args, env2(env, &out, &errOut))
			code := report(&errOut, err)
			if code != c.code || !strings.Contains(errOut.String(), c.says) {
				t.Errorf("exit %d, stderr %q; want %d saying %q", code, errOut.String(), c.code, c.says)
			}
		})
	}
	rc.down.Store(true)
	var out, errOut strings.Builder
	if code := report(&errOut, run(t.Context(), []string{"webhooks", "test", rc.srv.URL + "/hook"}, env2(env, &out, &errOut))); code != 1 ||
		!strings.Contains(errOut.String(), "answered HTTP 503") {
		t.Errorf("a refusing endpoint: exit %d, %q", code, errOut.String())
	}
}

// env2 is a command environment with vars and the given outputs.
func env2(vars map[string]string, stdout, stderr io.Writer) env {
	return env{stdout: stdout, stderr: stderr, lookup: func(k string) (string, bool) { v, ok := vars[k]; return v, ok }}
}
