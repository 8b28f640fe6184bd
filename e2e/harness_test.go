// Package e2e runs Keygate behind real proxies: the example configs of
// examples/ are what is started, so the examples are what is tested.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/internal/testrun"
)

// repoRoot is the module root (the test runs in e2e/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	return root
}

// startProc starts cmd in its own process group and stops the group in
// t.Cleanup: SIGTERM, then SIGKILL after 5 s.
func startProc(t *testing.T, name string, cmd *exec.Cmd) (*syncbuf.Buffer, <-chan struct{}) {
	t.Helper()
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return out, done
}

// waitFor polls ok until it is true, the process exits or 15 s pass.
func waitFor(t *testing.T, what string, done <-chan struct{}, out *syncbuf.Buffer, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		select {
		case <-done:
			t.Fatalf("%s exited before it was ready:\n%s", what, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 15 s:\n%s", what, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// renderExample writes examples/<rel> to path with head before it and each
// placeholder replaced; each must occur exactly once, so that an example
// that drifts from its test fails rather than runs half filled in.
func renderExample(t *testing.T, rel, path, head string, fill [][2]string) string {
	t.Helper()
	conf := string(readExample(t, rel))
	for _, r := range fill {
		if n := strings.Count(conf, r[0]); n != 1 {
			t.Fatalf("examples/%s: %q occurs %d times, want once (the test fills it in)", rel, r[0], n)
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	if err := os.WriteFile(path, []byte(head+conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startListening starts a server process and waits until it accepts
// connections on listen.
func startListening(t *testing.T, name string, cmd *exec.Cmd, listen string) {
	t.Helper()
	out, done := startProc(t, name, cmd)
	waitFor(t, name, done, out, func() bool {
		c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

const keygateConfig = `log: {level: warn}
plans:
  test: [{limit: 100, period: 1h}]
  live: [{limit: 100, period: 1h}]
  tiny: [{limit: 2, period: 1h}]
routes:
  - {methods: [GET], path: "/api/v1/patients/**", scopes: [patients:read]}
  - {methods: [GET], path: "/api/v1/forms/**", scopes: [forms:read]}
  - {methods: [POST], path: "/api/v1/forms/**", scopes: [forms:write]}
`

type keygate struct {
	bin      string
	env      []string
	httpAddr string
}

// startKeygate builds cmd/keygate and creates a fresh SQLite key database
// for it; serve starts it on loopback ports.
func startKeygate(t *testing.T, dir string) *keygate {
	t.Helper()
	bin := filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-o", bin, "./cmd/keygate")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/keygate: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(cfg, []byte(keygateConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	k := &keygate{bin: bin, httpAddr: testrun.FreeAddr(t)}
	k.env = append(os.Environ(),
		"KEYGATE_CONFIG="+cfg,
		"KEYGATE_DATABASE_URL=sqlite:"+filepath.Join(dir, "k.db"),
		"KEYGATE_GRPC_ADDR="+testrun.FreeAddr(t),
		"KEYGATE_HTTP_ADDR="+k.httpAddr,
		"KEYGATE_PORTAL_ADDR=127.0.0.1:0",
	)
	migrate := exec.Command(bin, "migrate")
	migrate.Env = k.env
	if out, err := migrate.CombinedOutput(); err != nil {
		t.Fatalf("keygate migrate: %v\n%s", err, out)
	}
	return k
}

// serve runs `keygate serve` with extra KEYGATE_* variables until stop is
// called or the test ends.
func (k *keygate) serve(t *testing.T, extra ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(k.bin, "serve")
	cmd.Env = append(k.env[:len(k.env):len(k.env)], extra...)
	out, done := startProc(t, "keygate", cmd)
	c := &http.Client{Timeout: time.Second}
	waitFor(t, "keygate", done, out, func() bool {
		resp, err := c.Get("http://" + k.httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
}

type createdKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

func (k *keygate) createKey(t *testing.T, args ...string) createdKey {
	t.Helper()
	cmd := exec.Command(k.bin, append([]string{"keys", "create", "--json"}, args...)...)
	cmd.Env = k.env
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("keygate keys create %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var c createdKey
	if err := json.Unmarshal(out, &c); err != nil || c.Key == "" || c.ID == "" {
		t.Fatalf("keys create --json printed %q: %v", out, err)
	}
	return c
}

// upstream records the requests a proxy passes on.
type upstream struct {
	mu   sync.Mutex
	got  []http.Header
	uri  []string
	body []string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	u.got = append(u.got, r.Header.Clone())
	u.uri = append(u.uri, r.URL.RequestURI())
	u.body = append(u.body, string(b))
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "upstream ok")
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.got) }

// last is the header, URI and body of the last request passed on.
func (u *upstream) last() (http.Header, string, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		return nil, "", ""
	}
	n := len(u.got) - 1
	return u.got[n], u.uri[n], u.body[n]
}

type errBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Type      string `json:"type"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

type result struct {
	status int
	header http.Header
	body   []byte
}

// front is a proxy in front of Keygate, as its clients see it.
type front struct {
	ctx    context.Context
	addr   string // host:port
	client *http.Client
}

func newFront(ctx context.Context, addr string) *front {
	return &front{ctx: ctx, addr: addr, client: &http.Client{Timeout: 5 * time.Second}}
}

// do sends a request without a body and reads the whole answer.
func (f *front) do(t *testing.T, method, path string, h map[string]string) result {
	t.Helper()
	return f.send(t, method, path, "", h)
}

func (f *front) send(t *testing.T, method, path, body string, h map[string]string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(f.ctx, method, "http://"+f.addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, b}
}

func bearer(k createdKey) string { return "Bearer " + k.Key }

// deniedBody checks the status, content type and JSON body of a denial and
// that the proxy's plumbing (x-keygate-error, x-keygate-status) stayed
// inside.
func deniedBody(t *testing.T, r result, status int, code string) errBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; headers %v body %s", r.status, status, r.header, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var b errBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("body %q is not Keygate's JSON: %v", r.body, err)
	}
	if b.Error.Code != code || b.Error.Message == "" || b.Error.Type == "" || b.Error.RequestID == "" {
		t.Errorf("body %s, want code %s with message, type and request_id", r.body, code)
	}
	for _, h := range []string{"X-Keygate-Error", "X-Keygate-Status"} {
		if v := r.header.Values(h); len(v) != 0 {
			t.Errorf("%s reached the client: %q", h, v)
		}
	}
	if status != 401 && len(r.header.Values("WWW-Authenticate")) != 0 {
		t.Errorf("WWW-Authenticate on a %d: %q", status, r.header.Values("WWW-Authenticate"))
	}
	return b
}

func retryAfter(t *testing.T, r result) int {
	t.Helper()
	ra := r.header.Values("Retry-After")
	if len(ra) != 1 {
		t.Fatalf("Retry-After %q, want exactly one", ra)
	}
	n, err := strconv.Atoi(ra[0])
	if err != nil || n < 1 {
		t.Errorf("Retry-After %q, want an integer ≥ 1", ra[0])
	}
	return n
}
