// Package testrun runs a server for a test: in the background, ready
// before the test goes on, and stopped and waited for when the test ends,
// with its error reported.
package testrun

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Runner is what a test runs: server.Server, without importing it (the
// server package's own tests use this package too).
type Runner interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
}

// Start runs r until the test ends and waits, at most within, until it is
// ready; a server that stops or is not ready in time fails the test. The
// stop it returns ends r at once and reports Run's error; it may be
// called before the test's end, and again.
func Start(t testing.TB, r Runner, within time.Duration) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var (
		once sync.Once
		err  error
	)
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case <-r.Ready():
	case err := <-done:
		done <- err // stop reads it again
		t.Fatalf("server stopped before it was ready: %v", err)
	case <-time.After(within):
		t.Fatalf("server not ready within %v", within)
	}
	return stop
}
