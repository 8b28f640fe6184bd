package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/internal/syncbuf"
	"github.com/keygate/keygate/internal/testrun"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// keygateBinary builds cmd/keygate once per test run.
func keygateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keygate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "keygate")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is one keygate serve process.
type proc struct {
	cmd                *exec.Cmd
	grpcAddr, httpAddr string
	client             authv3.AuthorizationClient
	logs               *syncbuf.Buffer
	done               chan error
}

// startProc runs `keygate serve` with env (KEYGATE_* variables) and waits
// until /readyz says ready.
func startProc(t *testing.T, env map[string]string) *proc {
	t.Helper()
	p := &proc{grpcAddr: testrun.FreeAddr(t), httpAddr: testrun.FreeAddr(t), logs: &syncbuf.Buffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(keygateBinary(t), "serve")
	p.cmd.Env = append(os.Environ(), "KEYGATE_GRPC_ADDR="+p.grpcAddr, "KEYGATE_HTTP_ADDR="+p.httpAddr,
		"KEYGATE_PORTAL_ADDR=127.0.0.1:0")
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("logs of keygate at %s:\n%s", p.grpcAddr, p.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("keygate exited: %v\n%s", err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate never became ready:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	p.client = authv3.NewAuthorizationClient(conn)
	return p
}

// check asks p about key on a route needing patients:read and returns the
// decision's code ("ok" when allowed).
func (p *proc) check(t *testing.T, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := p.client.Check(ctx, buildCheckRequest("GET", "/api/v1/patients", "h", "",
		[][2]string{{"authorization", "Bearer " + key}}, map[string]string{"keygate.scopes": "patients:read"}, false))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if resp.GetOkResponse() != nil {
		return "ok"
	}
	var b struct{ Error struct{ Code string } }
	json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &b)
	return b.Error.Code
}

// cliProc runs one keygate CLI command as a process.
func cliProc(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	cmd := exec.Command(keygateBinary(t), args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("keygate %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// createKeyProc creates a key with the CLI, migrating first as an
// operator does before managing keys (migrate is idempotent).
func createKeyProc(t *testing.T, env map[string]string, args ...string) (id, key string) {
	t.Helper()
	cliProc(t, env, "migrate")
	var c struct{ ID, Key string }
	out := cliProc(t, env, append([]string{"keys", "create", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return c.ID, c.Key
}
