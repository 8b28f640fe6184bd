// Package e2e runs Keygate behind real proxies: the example configs of
// examples/ are what is started, so the examples are what is tested.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
)

const nginxBin = "/usr/sbin/nginx"

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

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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

const keygateConfig = `log: {level: warn, format: text}
plans:
  test: [{limit: 100, period: 1h}]
  live: [{limit: 100, period: 1h}]
  tiny: [{limit: 2, period: 1h}]
routes:
  - {methods: [GET], path: "/api/v1/patients/**", scopes: [patients:read]}
  - {methods: [GET], path: "/api/v1/forms/**", scopes: [forms:read]}
`

type keygate struct {
	bin      string
	env      []string
	httpAddr string
}

// startKeygate builds cmd/keygate and runs `keygate serve` over a fresh
// SQLite file on loopback ports.
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
	k := &keygate{bin: bin, httpAddr: freeAddr(t)}
	k.env = append(os.Environ(),
		"KEYGATE_CONFIG="+cfg,
		"KEYGATE_DATABASE_URL=sqlite:"+filepath.Join(dir, "k.db"),
		"KEYGATE_GRPC_ADDR="+freeAddr(t),
		"KEYGATE_HTTP_ADDR="+k.httpAddr,
	)
	// The database is created by `keygate migrate`, as an operator would
	// before managing keys; other commands never create one.
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

// renderNginxConf fills the three addresses of examples/nginx/nginx.conf
// and moves nginx's temp files into dir; the rest is the example as is.
func renderNginxConf(t *testing.T, dir, listen, keygateAddr, appAddr string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "nginx", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(src)
	var temps strings.Builder
	temps.WriteString("http {\n")
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", d, p)
	}
	for _, r := range [][2]string{
		{"server keygate:9090;", "server " + keygateAddr + ";"},
		{"server app:8080;", "server " + appAddr + ";"},
		{"listen 8080;", "listen " + listen + ";"},
		{"http {\n", temps.String()},
	} {
		if n := strings.Count(conf, r[0]); n != 1 {
			t.Fatalf("examples/nginx/nginx.conf: %q occurs %d times, want once (the test fills it in)", r[0], n)
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startNginx(t *testing.T, dir, conf, listen string) {
	t.Helper()
	global := "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"
	if os.Geteuid() == 0 {
		// As root, workers would switch to nobody, who cannot use dir.
		global += " user root;"
	}
	test := exec.Command(nginxBin, "-t", "-q", "-e", "stderr", "-p", dir+"/", "-c", conf, "-g", global)
	if out, err := test.CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejects the rendered examples/nginx/nginx.conf: %v\n%s", err, out)
	}
	cmd := exec.Command(nginxBin, "-e", "stderr", "-p", dir+"/", "-c", conf, "-g", global)
	out, done := startProc(t, "nginx", cmd)
	waitFor(t, "nginx", done, out, func() bool {
		c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// upstream records the requests nginx passes on.
type upstream struct {
	mu  sync.Mutex
	got []http.Header
	uri []string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.got = append(u.got, r.Header.Clone())
	u.uri = append(u.uri, r.URL.RequestURI())
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "upstream ok")
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.got) }

func (u *upstream) last() (http.Header, string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		return nil, ""
	}
	return u.got[len(u.got)-1], u.uri[len(u.uri)-1]
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

func TestHTTPNginxAuthRequest(t *testing.T) {
	if _, err := os.Stat(nginxBin); err != nil {
		t.Fatalf("%s is missing: this end-to-end test needs a real nginx; run `apt-get install -y nginx` (Debian's package, with the auth_request module): %v", nginxBin, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	dir := t.TempDir()

	kg := startKeygate(t, dir)
	reader := kg.createKey(t, "--tenant", "acme", "--scopes", "patients:read")
	formsOnly := kg.createKey(t, "--tenant", "acme", "--scopes", "forms:read")
	tiny := kg.createKey(t, "--tenant", "small", "--scopes", "patients:read", "--plan", "tiny")
	stopKeygate := kg.serve(t)

	up := &upstream{}
	app := httptest.NewServer(up)
	t.Cleanup(app.Close)

	listen := freeAddr(t)
	conf := renderNginxConf(t, dir, listen, kg.httpAddr, strings.TrimPrefix(app.URL, "http://"))
	startNginx(t, dir, conf, listen)

	client := &http.Client{Timeout: 5 * time.Second}
	do := func(t *testing.T, method, path string, h map[string]string) result {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, "http://"+listen+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
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
	bearer := func(k createdKey) string { return "Bearer " + k.Key }

	// denied checks a denial reached the client as Keygate rendered it.
	denied := func(t *testing.T, r result, status int, code string) errBody {
		t.Helper()
		b := deniedBody(t, r, status, code)
		if got := r.header.Get("X-Keygate-Code"); got != code {
			t.Errorf("X-Keygate-Code %q, want %q", got, code)
		}
		return b
	}

	t.Run("allowed", func(t *testing.T) {
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42?full=1", map[string]string{
			"Authorization":    bearer(reader),
			"X-Keygate-Tenant": "evil",
			"X-Keygate-Key-Id": "key_spoofed",
			"X-Keygate-Scopes": "admin:*",
			"X-Keygate-Error":  "spoofed",
		})
		if r.status != 200 || string(r.body) != "upstream ok" {
			t.Fatalf("status %d body %q, want 200 from the upstream; headers %v", r.status, r.body, r.header)
		}
		if up.count() != before+1 {
			t.Fatalf("upstream saw %d requests, want 1", up.count()-before)
		}
		h, uri := up.last()
		if uri != "/api/v1/patients/42?full=1" {
			t.Errorf("upstream URI %q", uri)
		}
		for k, want := range map[string]string{
			"X-Keygate-Key-Id": reader.ID,
			"X-Keygate-Tenant": "acme",
			"X-Keygate-Org":    "acme",
			"X-Keygate-Env":    "test",
			"X-Keygate-Scopes": "patients:read",
			"X-Keygate-Plan":   "test",
		} {
			if got := h.Values(k); len(got) != 1 || got[0] != want {
				t.Errorf("upstream %s = %q, want exactly [%q]", k, got, want)
			}
		}
		for _, k := range []string{"Authorization", "X-Keygate-Error", "X-Keygate-Status", "X-Keygate-Code"} {
			if v := h.Values(k); len(v) != 0 {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
		if id := h.Get("X-Request-Id"); len(id) != 32 {
			t.Errorf("upstream X-Request-Id %q, want nginx's $request_id", id)
		}
		for k, want := range map[string]string{"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "99"} {
			if got := r.header.Get(k); got != want {
				t.Errorf("client %s = %q, want %q", k, got, want)
			}
		}
		for _, k := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Reset"} {
			if r.header.Get(k) == "" {
				t.Errorf("client got no %s; headers %v", k, r.header)
			}
		}
		if v := r.header.Values("Retry-After"); len(v) != 0 {
			t.Errorf("Retry-After on an allowed response: %q", v)
		}
	})

	t.Run("missing key is 401", func(t *testing.T) {
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42", nil)
		b := denied(t, r, 401, "missing_api_key")
		if w := r.header.Values("WWW-Authenticate"); len(w) != 1 || !strings.HasPrefix(w[0], `Bearer realm="keygate"`) {
			t.Errorf("WWW-Authenticate %q, want one Bearer realm=\"keygate\"", w)
		}
		if len(b.Error.RequestID) != 32 {
			t.Errorf("request_id %q, want nginx's $request_id", b.Error.RequestID)
		}
		if up.count() != before {
			t.Error("a denied request reached the upstream")
		}
	})

	t.Run("invalid key is 401", func(t *testing.T) {
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": "Bearer sk_test_nope"})
		denied(t, r, 401, "invalid_api_key")
		if w := r.header.Get("WWW-Authenticate"); !strings.Contains(w, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\"", w)
		}
	})

	t.Run("missing scope is 403", func(t *testing.T) {
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": bearer(formsOnly)})
		b := denied(t, r, 403, "insufficient_scope")
		if !strings.Contains(b.Error.Message, "patients:read") {
			t.Errorf("message %q does not name the missing scope", b.Error.Message)
		}
	})

	t.Run("unknown route is 404", func(t *testing.T) {
		denied(t, do(t, "GET", "/nope", map[string]string{"Authorization": bearer(reader)}), 404, "route_not_found")
	})

	t.Run("client cannot pick the route Keygate judges", func(t *testing.T) {
		before := up.count()
		r := do(t, "GET", "/admin/secrets", map[string]string{
			"Authorization":     bearer(reader),
			"X-Original-URI":    "/api/v1/patients/1",
			"X-Forwarded-Uri":   "/api/v1/patients/1",
			"X-Original-Method": "GET",
		})
		denied(t, r, 404, "route_not_found")
		if up.count() != before {
			t.Error("a spoofed route reached the upstream")
		}
	})

	t.Run("bad organization is 400", func(t *testing.T) {
		denied(t, do(t, "GET", "/api/v1/patients/42", map[string]string{
			"Authorization": bearer(reader), "X-Organization-Id": "not an org!",
		}), 400, "invalid_organization")
	})

	t.Run("rate limited is 429 with Retry-After", func(t *testing.T) {
		for i := range 2 {
			r := do(t, "GET", "/api/v1/patients/1", map[string]string{"Authorization": bearer(tiny)})
			if r.status != 200 {
				t.Fatalf("request %d of the tiny plan: status %d body %s", i+1, r.status, r.body)
			}
			if got, want := r.header.Get("X-RateLimit-Remaining"), strconv.Itoa(1-i); got != want {
				t.Errorf("request %d: X-RateLimit-Remaining %q, want %q", i+1, got, want)
			}
		}
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/1", map[string]string{"Authorization": bearer(tiny)})
		denied(t, r, 429, "rate_limited")
		retryAfter(t, r)
		if got := r.header.Get("X-RateLimit-Remaining"); got != "0" {
			t.Errorf("X-RateLimit-Remaining %q on the 429, want 0", got)
		}
		if r.header.Get("RateLimit-Policy") == "" {
			t.Error("no RateLimit-Policy on the 429")
		}
		if up.count() != before {
			t.Error("a rate-limited request reached the upstream")
		}
		// Still 429: the denial was replayed, not decided again.
		denied(t, do(t, "GET", "/api/v1/patients/1", map[string]string{"Authorization": bearer(tiny)}), 429, "rate_limited")
	})

	t.Run("keygate down is 503", func(t *testing.T) {
		stopKeygate()
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": bearer(reader)})
		b := deniedBody(t, r, 503, "unavailable")
		if !strings.Contains(b.Error.Message, "authorization service") {
			t.Errorf("message %q, want nginx's fallback", b.Error.Message)
		}
		if n := retryAfter(t, r); n != 1 {
			t.Errorf("Retry-After %d, want 1", n)
		}
		if up.count() != before {
			t.Error("with Keygate down a request reached the upstream (must fail closed)")
		}
	})

	t.Run("keygate's own 503 with Retry-After", func(t *testing.T) {
		// Redis unreachable with on_redis_error: closed: every rate limit
		// answers 503 unavailable, on the same address nginx knows.
		kg.serve(t, "KEYGATE_REDIS_URL=redis://"+freeAddr(t)+"/0", "KEYGATE_LIMITS_ON_REDIS_ERROR=closed")
		before := up.count()
		r := do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": bearer(reader)})
		b := denied(t, r, 503, "unavailable")
		if strings.Contains(b.Error.Message, "authorization service") {
			t.Errorf("message %q is nginx's fallback, want Keygate's", b.Error.Message)
		}
		retryAfter(t, r)
		if up.count() != before {
			t.Error("a 503 reached the upstream")
		}
	})
}

// deniedBody checks the status, content type and JSON body of a denial and
// that nginx's own plumbing (x-keygate-error, x-keygate-status) stayed
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
