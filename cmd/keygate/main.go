// Command keygate is the Keygate API-key gate: the ext_authz server
// (serve) and the tools to run it (keys, grants, migrate, check, version).
package main

import (
	"context"
	"errors"
	"flag"
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
	err  error
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
	if err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if !errors.Is(err, flag.ErrHelp) && (ee == nil || ee.err != nil) {
			fmt.Fprintln(os.Stderr, "keygate:", err)
		}
		os.Exit(code)
	}
}

const usageText = `Usage: keygate <command> [flags]

Commands:
  serve                       run the ext_authz gRPC server and the HTTP listener
  keys create|list|show|revoke|roll|import
                              manage API keys
  grants set|list|revoke      manage organization grants
  migrate                     apply database schema migrations
  check                       send one CheckRequest to a running server, as Envoy would
  version                     print the version

Every command takes --config FILE (or KEYGATE_CONFIG); commands that print
records take --json. Run 'keygate <command> -h' for its flags.
`

func run(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usageText)
		return &exitError{code: 2, err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, e)
	case "keys":
		return cmdKeys(ctx, rest, e)
	case "grants":
		return cmdGrants(ctx, rest, e)
	case "migrate":
		return cmdMigrate(ctx, rest, e)
	case "check":
		return cmdCheck(ctx, rest, e)
	case "version":
		return cmdVersion(rest, e)
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usageText)
		return nil
	}
	fmt.Fprint(e.stderr, usageText)
	return &exitError{code: 2, err: fmt.Errorf("unknown command %q", cmd)}
}

// parse parses flags that may come before or after positional arguments
// ("keys revoke ID --json" as well as "keys revoke --json ID").
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, &exitError{code: 2, err: err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlags(name string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("keygate "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

func usageErr(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}
