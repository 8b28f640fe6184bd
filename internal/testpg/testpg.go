// Package testpg runs a private, throwaway PostgreSQL server for tests that
// must stop and restart the database under a running Keygate (outage and
// recovery tests), which they cannot do to the machine's shared server.
//
// The server is initialised into a fresh temporary directory and listens on
// a free loopback port; it runs with fsync off, so it starts in well under
// a second after initdb. When the tests run as root, initdb and pg_ctl run
// as the postgres OS user, which PostgreSQL requires.
package testpg

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinDirEnv names an environment variable that, when set, is the directory
// holding initdb and pg_ctl; otherwise the newest
// /usr/lib/postgresql/*/bin is used, then PATH.
const BinDirEnv = "KEYGATE_TEST_PG_BIN"

// Server is one private PostgreSQL server. Its methods fail the test (via
// t.Fatal) on error, so they must be called from the test's goroutine.
type Server struct {
	t    testing.TB
	bin  string
	dir  string // owned by the server's OS user: data/, the log, the socket
	port int
	cred *syscall.Credential // nil: run as ourselves

	mu      sync.Mutex
	running bool
}

// Start initialises and starts a new server; t.Cleanup stops it and
// removes its files. Missing PostgreSQL binaries fail t; only -short (the
// fast tier, which leaves out tests that need services) skips it.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a private PostgreSQL server: -short leaves out the tests that need services or tools; make test runs them")
	}
	bin, err := binDir()
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	s := &Server{t: t, bin: bin}
	if os.Geteuid() == 0 {
		s.cred, err = credential("postgres")
		if err != nil {
			t.Fatalf("testpg: running as root, so PostgreSQL must run as the postgres user: %v", err)
		}
	}
	// Not t.TempDir: its parent directories are private to root, and the
	// server's user must reach its data directory.
	s.dir, err = os.MkdirTemp("", "testpg-")
	if err != nil {
		t.Fatalf("testpg: %v", err)
	}
	t.Cleanup(func() {
		s.stop(false)
		os.RemoveAll(s.dir)
	})
	if s.cred != nil {
		if err := os.Chown(s.dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatalf("testpg: %v", err)
		}
	}
	if s.port, err = freePort(); err != nil {
		t.Fatalf("testpg: free port: %v", err)
	}
	if out, err := s.run("initdb", "-D", s.dataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("testpg: initdb: %v\n%s", err, out)
	}
	s.Start()
	return s
}

// URL is a connection string for the server's postgres database as the
// postgres superuser, e.g. postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
func (s *Server) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Port is the server's TCP port, the same across Stop and Start.
func (s *Server) Port() int { return s.port }

// Start starts the server again after Stop, on the same port and data
// directory. Start on a running server does nothing.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return
	}
	opts := strings.Join([]string{
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.dir,
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=50",
		"-c", "shared_buffers=16MB",
	}, " ")
	if out, err := s.run("pg_ctl", "-D", s.dataDir(), "-l", s.logFile(), "-o", opts, "-w", "-t", "30", "start"); err != nil {
		s.t.Fatalf("testpg: pg_ctl start on port %d: %v\n%s\n%s", s.port, err, out, s.logTail())
	}
	s.running = true
}

// Stop shuts the server down at once (pg_ctl's fast mode: sessions are
// ended, clients see their connections drop). Stop on a stopped server
// does nothing.
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(true); err != nil {
		s.t.Fatalf("testpg: %v", err)
	}
}

func (s *Server) stop(check bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return nil
	}
	out, err := s.run("pg_ctl", "-D", s.dataDir(), "-m", "fast", "-w", "-t", "30", "stop")
	if err != nil {
		// Never leave a server behind: fall back to immediate mode.
		if _, err2 := s.run("pg_ctl", "-D", s.dataDir(), "-m", "immediate", "-w", "-t", "10", "stop"); err2 == nil && !check {
			err = nil
		}
	}
	if err != nil && check {
		return fmt.Errorf("pg_ctl stop: %w\n%s\n%s", err, out, s.logTail())
	}
	s.running = false
	return nil
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) logFile() string { return filepath.Join(s.dir, "postgres.log") }

// logTail returns the end of the server log, for error messages.
func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logFile())
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "server log:\n" + string(b)
}

// run runs one of the PostgreSQL programs as the server's user.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir // the server's user may not be able to enter ours
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// pg_ctl start leaves the server running with our pipes open unless
	// its output goes to the log file (-l); WaitDelay guards against a
	// server that holds them anyway.
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return out.Bytes(), err
}

// binDir finds the directory holding initdb and pg_ctl.
func binDir() (string, error) {
	has := func(dir string) bool {
		for _, p := range []string{"initdb", "pg_ctl"} {
			if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv(BinDirEnv); d != "" {
		if !has(d) {
			return "", fmt.Errorf("%s=%s holds no initdb and pg_ctl", BinDirEnv, d)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major version first: compare numerically, so 15 beats 9.6.
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin, in $%s or on PATH; install the PostgreSQL server (Debian: apt-get install postgresql)", BinDirEnv)
}

// major reads the version number out of /usr/lib/postgresql/VERSION/bin.
func major(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the server binds it; on that rare race Start fails.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
