package main

import (
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/testrun"
)

var consoleLinkRE = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/console/link/[A-Za-z0-9_-]+`)

// TestServeConsoleLink: with no admin token, `keygate serve` prints a
// one-time console link that signs the local operator in, once; its
// portal listener serves the portal, refusing an admin token.
func TestServeConsoleLink(t *testing.T) {
	portal := testrun.FreeAddr(t)
	p := startProc(t, map[string]string{
		"KEYGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "k.db"),
		"KEYGATE_PORTAL_ADDR":  portal,
	})
	var link string
	for deadline := time.Now().Add(5 * time.Second); link == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		link = consoleLinkRE.FindString(p.logs.String())
	}
	if link == "" || !strings.Contains(link, p.httpAddr[strings.LastIndexByte(p.httpAddr, ':'):]) {
		t.Fatalf("no console link on http_addr %s in the output:\n%s", p.httpAddr, p.logs.String())
	}
	if code := link[strings.LastIndexByte(link, '/')+1:]; strings.Count(p.logs.String(), code) != 1 {
		t.Error("the link's code is in the log as well as on the terminal")
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 || resp.Cookies()[0].Name != "keygate_console" {
		t.Fatalf("the link: %d %v", resp.StatusCode, resp.Cookies())
	}
	req, _ := http.NewRequest("GET", "http://"+p.httpAddr+"/console/", nil)
	req.AddCookie(resp.Cookies()[0])
	page, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if page.StatusCode != 200 || !strings.Contains(string(body), "local (admin)") {
		t.Errorf("the console after the link: %d", page.StatusCode)
	}
	if again, err := noFollow.Get(link); err != nil || again.StatusCode != http.StatusNotFound || len(again.Cookies()) != 0 {
		t.Errorf("the link used twice: %v %v", again.StatusCode, err)
	}
	// The portal listener serves the portal, and nothing of the admin API.
	r, err := http.Get("http://" + portal + "/portal/api/v1/keys")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("portal listener: %d %v", r.StatusCode, r.Header)
	}
	for _, path := range []string{"/admin/v1/keys", "/console/", "/metrics", "/authz"} {
		r, err := http.Get("http://" + portal + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the portal listener: %d, want 404", path, r.StatusCode)
		}
	}
}
