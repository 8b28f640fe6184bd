package deploy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/internal/testrun"
	"github.com/keygate/keygate/keys"
)

// TestPrometheusScrapesKeygate runs a real Prometheus (Debian's package)
// on loopback with the rules loaded, scraping a running Keygate that
// answers checks meanwhile: the target must be up, every rule must
// evaluate without error, and every recording rule must produce series.
func TestPrometheusScrapesKeygate(t *testing.T) {
	prom := tool(t, "prometheus", promInstall)
	kg := startKeygate(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { traffic(t, kg, stop) })
	defer wg.Wait()
	defer close(stop)

	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: keygate
    metrics_path: %s
    static_configs: [{targets: [%q]}]
`, rules, MetricsPath, kg)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testrun.FreeAddr(t)
	out := &syncbuf.Buffer{}
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", out.String())
		}
	}()
	api := func(path string, v any) error {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	eventually := func(what string, ok func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			select {
			case <-exited:
				t.Fatalf("prometheus exited waiting for %s", what)
			default:
			}
			good, last := ok()
			if good {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s, still no %s: %s", what, last)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}

	eventually("Keygate target up", func() (bool, string) {
		var r struct {
			Data struct {
				ActiveTargets []struct {
					Health, LastError string
					Labels            map[string]string
				}
			}
		}
		if err := api("/api/v1/targets", &r); err != nil {
			return false, err.Error()
		}
		for _, tg := range r.Data.ActiveTargets {
			if tg.Labels["job"] == "keygate" && tg.Health == "up" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", r.Data.ActiveTargets)
	})

	groups := loadRules(t)
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record == "" {
				continue
			}
			eventually("series of "+r.Record, func() (bool, string) {
				var q struct {
					Data struct {
						Result []json.RawMessage
					}
				}
				if err := api("/api/v1/query?query="+url.QueryEscape(r.Record), &q); err != nil {
					return false, err.Error()
				}
				return len(q.Data.Result) > 0, "no series"
			})
		}
	}
	var rs struct {
		Data struct {
			Groups []struct {
				Name  string
				Rules []struct{ Name, Health, LastError string }
			}
		}
	}
	if err := api("/api/v1/rules", &rs); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range rs.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
			}
		}
	}
	want := 0
	for _, g := range groups.Groups {
		want += len(g.Rules)
	}
	if n != want {
		t.Errorf("prometheus evaluates %d rules, the file has %d", n, want)
	}
}

// traffic sends Keygate forward-auth checks until stop: a valid key (cache
// hits), fresh unknown keys (misses, each a database lookup) and requests
// without a key, so that every counter the rules read moves.
func traffic(t *testing.T, addr string, stop <-chan struct{}) {
	base := "http://" + addr
	req, _ := http.NewRequest(http.MethodPost, base+"/admin/v1/keys", strings.NewReader(`{"tenant":"acme","env":"live"}`))
	req.Header.Set("Authorization", "Bearer admin-token-for-tests")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("creating a key: %v", err)
		return
	}
	var created struct{ Key string }
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if created.Key == "" {
		t.Errorf("creating a key: %s", resp.Status)
		return
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		req, _ := http.NewRequest(http.MethodGet, base+"/authz/api/v1/things", nil)
		switch i % 3 {
		case 0:
			req.Header.Set("Authorization", "Bearer "+created.Key)
		case 1:
			unknown, _ := keys.Generate(keys.Format{Prefix: "sk_live_", Env: keys.EnvLive, Checksum: true})
			req.Header.Set("Authorization", "Bearer "+unknown)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}
