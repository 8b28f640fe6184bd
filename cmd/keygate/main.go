// Command keygate is the Keygate API-key gate: the ext_authz server
// (serve) and the tools to run it (keys, grants, migrate, check, version).
// The command tree is in cli.go; each command lives in its own file.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
)

// exitError carries a process exit code through the command functions.
type exitError struct {
	code int
	err  error  // nil: exit with code, printing nothing
	hint string // a line printed after the error, e.g. where usage is
}

func (e *exitError) Error() string {
	if e.err == nil {
		return "exit status " + strconv.Itoa(e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// env is what a command may touch of the process: main passes the real
// ones, tests pass their own.
type env struct {
	stdout, stderr io.Writer
	lookup         func(string) (string, bool)
	environ        func() []string // "NAME=value" entries; nil: none
}

func (e env) environOrNil() []string {
	if e.environ == nil {
		return nil
	}
	return e.environ()
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, lookup: os.LookupEnv, environ: os.Environ})
	stop()
	os.Exit(report(os.Stderr, err))
}

// run runs the command line args (without the program name).
func run(ctx context.Context, args []string, e env) error {
	root := newRoot(e)
	root.SetArgs(append([]string{}, args...)) // never nil: cobra reads os.Args for nil
	return root.ExecuteContext(ctx)
}

// report prints err as the process's last words and returns the exit
// status: 0 for nil, an exitError's code, else 1.
func report(w io.Writer, err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		fmt.Fprintln(w, "keygate:", err)
		return 1
	}
	if ee.err != nil {
		fmt.Fprintln(w, "keygate:", err)
	}
	if ee.hint != "" {
		fmt.Fprintln(w, ee.hint)
	}
	return ee.code
}
