package web_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keygate/keygate/config"
	"github.com/keygate/keygate/internal/testrun"
	"github.com/keygate/keygate/server"
	"github.com/keygate/keygate/store"
)

// chromiumPath is Debian's chromium, which .ci/run installs.
const chromiumPath = "/usr/bin/chromium"

const (
	browserAdminToken  = "kgadm_browser-admin"
	browserViewerToken = "kgadm_browser-viewer"
)

// keygate is a whole Keygate server, as `keygate serve` runs it.
type keygate struct {
	t                  *testing.T
	http, portal, grpc string // base URLs / address
	db                 string // the key database's URL
}

func startKeygate(t *testing.T) *keygate {
	t.Helper()
	dir := t.TempDir()
	portalAddr := testrun.FreeAddr(t)
	sum := sha256.Sum256([]byte(browserViewerToken))
	yaml := fmt.Sprintf(`
database: {url: "sqlite:%s", poll_interval: 50ms, last_used_flush: 100ms}
usage: {flush_interval: 100ms}
grpc_addr: 127.0.0.1:0
http_addr: 127.0.0.1:0
log: {level: warn}
admin:
  token: %s
  tokens: [{name: auditor, sha256: %s, role: viewer}]
portal:
  addr: %s
  public_url: http://%s
  title: Cara API keys
  accent_color: "#0f766e"
routes:
  - {methods: [GET], path: "/api/v1/patients/**", scopes: [patients:read]}
  - {methods: [POST], path: "/api/v1/forms/**", scopes: [forms:write]}
`, filepath.Join(dir, "k.db"), browserAdminToken, hex.EncodeToString(sum[:]), portalAddr, portalAddr)
	path := filepath.Join(dir, "keygate.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	testrun.Start(t, srv, 20*time.Second)
	g, h := srv.Addrs()
	return &keygate{t: t, http: "http://" + h.String(), portal: "http://" + srv.PortalAddr().String(), grpc: g.String(), db: cfg.Database.URL}
}

// adminPost calls the admin API with the admin token.
func (k *keygate) adminPost(path, body string) map[string]any {
	k.t.Helper()
	req, _ := http.NewRequest("POST", k.http+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+browserAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		k.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode >= 300 {
		k.t.Fatalf("POST %s: %d %v %v", path, resp.StatusCode, out, err)
	}
	return out
}

// history adds a month of made-up usage to a key, straight into the key
// database, so that the charts in the screenshots have a past; the
// present hour's counts come from real checks.
func (k *keygate) history(id, tenant string) {
	k.t.Helper()
	db, err := store.Open(context.Background(), k.db, store.Options{})
	if err != nil {
		k.t.Fatal(err)
	}
	defer db.Close()
	now := time.Now().UTC().Truncate(time.Hour)
	var batch []store.UsageCount
	// From the current hour back, so that the charts are full at any
	// time of day (just after midnight, today has only the current hour).
	for h := 0; h < 30*24; h++ {
		start := now.Add(-time.Duration(h) * time.Hour)
		busy := int64(40 + 30*((start.Hour()+6)%24)/6 + h%7*5) // a daily rhythm
		batch = append(batch, store.UsageCount{KeyID: id, Tenant: tenant, Start: start, Allowed: busy, RateLimited: int64(h % 5 / 4 * 12), Denied: int64(h % 11 / 10 * 3)})
	}
	if err := db.AddUsage(context.Background(), batch); err != nil {
		k.t.Fatal(err)
	}
}

// check asks Keygate, as a proxy would, whether key may GET a patient,
// and returns the status.
func (k *keygate) check(key string) int {
	k.t.Helper()
	req, _ := http.NewRequest("GET", k.http+"/authz", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/api/v1/patients/42")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		k.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eventually waits up to 5 seconds for key's check to answer want (the
// server's cache learns of a change at once; this only absorbs scheduling).
func (k *keygate) eventually(key string, want int) {
	k.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := k.check(key)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("check: %d, want %d", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// browser starts headless Chromium; without it the test fails, saying so.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser tests need Debian's chromium at %s (apt-get install chromium): %v", chromiumPath, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromiumPath), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1200, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// do runs steps, failing the test with what was being done.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage: %s", what, err, html)
	}
}

func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// shot writes a screenshot of the page to docs/images/name.png when
// KEYGATE_SCREENSHOTS=1 (the documentation's pictures are these).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("KEYGATE_SCREENSHOTS") != "1" {
		return
	}
	png := run(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("screenshot %s is not a PNG", name)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "images", name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// unlabelled counts the form fields a person cannot tell apart by their
// label: every visible input and select needs one.
const unlabelled = `[...document.querySelectorAll("input:not([type=hidden]), select, textarea")].filter(e => e.labels.length === 0).length`
