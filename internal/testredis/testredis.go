// Package testredis runs private, throwaway redis-server processes for tests
// that must kill and restart Redis under a running Keygate, or need a Redis
// Cluster, which they cannot do to the machine's shared server.
//
// Servers listen on free loopback ports, persist nothing (--save "",
// --appendonly no) and are killed by t.Cleanup. A missing redis-server or
// redis-cli fails the test: Redis is part of the test setup, never a reason
// to skip.
package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/syncbuf"

	"github.com/redis/go-redis/v9"
)

// DefaultSharedURL is this machine's Redis, used unless
// KEYGATE_TEST_REDIS_URL names another.
const DefaultSharedURL = "redis://127.0.0.1:6379/0"

// SharedURL is the shared Redis server tests use, each under a key prefix
// of its own (never FLUSHDB).
func SharedURL() string {
	if u := os.Getenv("KEYGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return DefaultSharedURL
}

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one private redis-server child process.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	port    int
	cluster bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncbuf.Buffer
}

// Start runs a private redis-server on a free loopback port and waits until
// it answers PING. t.Cleanup kills it.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a private redis-server: -short leaves out the tests that need services or tools; make test runs them")
	}
	bin := lookPath(t, "redis-server")
	s := &Server{t: t, bin: bin, dir: t.TempDir()}
	s.startFresh()
	return s
}

// startFresh picks a free port and starts the server there; another
// process may take the port between our probe and redis-server's bind, so
// it tries a few ports.
func (s *Server) startFresh() {
	s.t.Helper()
	var err error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			s.t.Fatalf("testredis: free port: %v", err)
		}
		if err = s.start(); err == nil {
			s.t.Cleanup(s.kill)
			return
		}
	}
	s.t.Fatalf("testredis: %v", err)
}

func lookPath(t testing.TB, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		t.Fatalf("testredis: %s is not on PATH; the tests need a local Redis installation (apt-get install redis-server, which provides redis-server and redis-cli): %v", prog, err)
	}
	return p
}

// URL is redis://127.0.0.1:PORT/0.
func (s *Server) URL() string { return fmt.Sprintf("redis://%s/0", s.Addr()) }

// Addr is 127.0.0.1:PORT.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's TCP port, the same across Kill and Restart.
func (s *Server) Port() int { return s.port }

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	args := []string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", s.dir}
	if s.cluster {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(s.dir, fmt.Sprintf("nodes-%d.conf", s.port)))
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	log := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server on port %d: %w", s.port, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(startTimeout)
	for {
		if err := ping(s.Addr()); err == nil {
			break
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on port %d exited at start:\n%s", s.port, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d did not answer PING within %v:\n%s", s.port, startTimeout, log.String())
		}
	}
	s.cmd, s.done, s.log = cmd, done, log
	return nil
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit. Clients see their connections drop. Kill on a dead server does
// nothing.
func (s *Server) Kill() { s.kill() }

func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again after Kill, on the same port, empty.
// Restart on a running server does nothing.
func (s *Server) Restart() {
	s.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		err := s.start()
		if err == nil {
			return
		}
		// The kernel may hold the port for a moment after the kill.
		if time.Now().After(deadline) {
			s.t.Fatalf("testredis: restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Cluster is a Redis Cluster of private servers, masters only.
type Cluster struct {
	Nodes []*Server
}

// StartCluster starts n (at least 3) cluster-enabled servers, joins them
// with redis-cli --cluster create, and waits until every node reports
// cluster_state:ok. t.Cleanup kills them.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a private Redis Cluster: -short leaves out the tests that need services or tools; make test runs them")
	}
	if n < 3 {
		t.Fatalf("testredis: a Redis Cluster needs at least 3 masters, got %d", n)
	}
	bin := lookPath(t, "redis-server")
	cli := lookPath(t, "redis-cli")
	dir := t.TempDir()
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for range n {
		s := &Server{t: t, bin: bin, dir: dir, cluster: true}
		s.startFresh()
		c.Nodes = append(c.Nodes, s)
		args = append(args, s.Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("testredis: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(startTimeout)
	for _, s := range c.Nodes {
		for {
			info, err := clusterInfo(s.Addr())
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testredis: cluster node %s not ok within %v: %v\n%s", s.Addr(), startTimeout, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL is redis+cluster://127.0.0.1:P1?addr=127.0.0.1:P2&addr=127.0.0.1:P3,
// the form limits accepts.
func (c *Cluster) URL() string {
	var b strings.Builder
	b.WriteString("redis+cluster://" + c.Nodes[0].Addr())
	for i, s := range c.Nodes[1:] {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString("addr=" + s.Addr())
	}
	return b.String()
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		a[i] = s.Addr()
	}
	return a
}

func ping(addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

func clusterInfo(addr string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return rdb.ClusterInfo(ctx).Result()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
