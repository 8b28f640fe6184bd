package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const caddyBin = "/usr/bin/caddy"

// renderCaddyfile fills the three addresses of examples/caddy/Caddyfile and
// turns Caddy's admin endpoint off (its fixed default port would collide
// between runs); the rest is the example as is.
func renderCaddyfile(t *testing.T, dir, listen, keygateAddr, appAddr string) string {
	t.Helper()
	return renderExample(t, "caddy/Caddyfile", filepath.Join(dir, "Caddyfile"), "{\n\tadmin off\n}\n\n", [][2]string{
		{"api.example.com {", "http://" + listen + " {"},
		{"forward_auth keygate:9090 {", "forward_auth " + keygateAddr + " {"},
		{"reverse_proxy app:8080", "reverse_proxy " + appAddr},
	})
}

func startCaddy(t *testing.T, dir, conf, listen string) {
	t.Helper()
	env := append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	validate := exec.Command(caddyBin, "validate", "--adapter", "caddyfile", "--config", conf)
	validate.Env = env
	if out, err := validate.CombinedOutput(); err != nil {
		t.Fatalf("caddy validate rejects the rendered examples/caddy/Caddyfile: %v\n%s", err, out)
	}
	cmd := exec.Command(caddyBin, "run", "--adapter", "caddyfile", "--config", conf)
	cmd.Env = env
	startListening(t, "caddy", cmd, listen)
}

// TestHTTPCaddyForwardAuth runs examples/caddy/Caddyfile with a real Caddy
// in front of a real Keygate and a test upstream.
func TestHTTPCaddyForwardAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("needs Caddy: -short leaves out the tests that need services or tools; make test runs them")
	}
	if _, err := os.Stat(caddyBin); err != nil {
		t.Fatalf("%s is missing: this end-to-end test needs a real Caddy; run `apt-get install -y caddy` (Debian's package): %v", caddyBin, err)
	}
	testProxy(t, proxy{
		name: "Caddy",
		start: func(t *testing.T, dir, listen, keygateAddr, appAddr string) {
			startCaddy(t, dir, renderCaddyfile(t, dir, listen, keygateAddr, appAddr), listen)
		},
		requestIDLen: 36, // {http.request.uuid}
		stripsAll:    true,
		fallback:     "Authorization service",
		more: func(t *testing.T, s *stage) {
			t.Run("upstream down stays Caddy's 502", func(t *testing.T) {
				// The Caddyfile's 503 is for Keygate only: an upstream
				// failure after an allowed check is not blamed on it.
				s.app.Close()
				r := s.f.do(t, "GET", "/api/v1/patients/42", map[string]string{"Authorization": bearer(s.reader)})
				if r.status != 502 {
					t.Errorf("status %d body %q, want Caddy's 502", r.status, r.body)
				}
			})
		},
	})
}
