package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const nginxBin = "/usr/sbin/nginx"

// renderNginxConf fills the three addresses of examples/nginx/nginx.conf
// and moves nginx's temp files into dir; the rest is the example as is.
func renderNginxConf(t *testing.T, dir, listen, keygateAddr, appAddr string) string {
	t.Helper()
	var temps strings.Builder
	temps.WriteString("http {\n")
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		p := filepath.Join(dir, d)
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", d, p)
	}
	return renderExample(t, "nginx/nginx.conf", filepath.Join(dir, "nginx.conf"), "", [][2]string{
		{"server keygate:9090;", "server " + keygateAddr + ";"},
		{"server app:8080;", "server " + appAddr + ";"},
		{"listen 8080;", "listen " + listen + ";"},
		{"http {\n", temps.String()},
	})
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
	startListening(t, "nginx", exec.Command(nginxBin, "-e", "stderr", "-p", dir+"/", "-c", conf, "-g", global), listen)
}

// TestHTTPNginxAuthRequest runs examples/nginx/nginx.conf with a real nginx
// in front of a real Keygate and a test upstream.
func TestHTTPNginxAuthRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("needs nginx: -short leaves out the tests that need services or tools; make test runs them")
	}
	if _, err := os.Stat(nginxBin); err != nil {
		t.Fatalf("%s is missing: this end-to-end test needs a real nginx; run `apt-get install -y nginx` (Debian's package, with the auth_request module): %v", nginxBin, err)
	}
	testProxy(t, proxy{
		name: "nginx",
		start: func(t *testing.T, dir, listen, keygateAddr, appAddr string) {
			startNginx(t, dir, renderNginxConf(t, dir, listen, keygateAddr, appAddr), listen)
		},
		requestIDLen: 32, // $request_id
		codeHeader:   true,
		fallback:     "authorization service",
	})
}
