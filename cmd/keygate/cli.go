package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func init() {
	// Help lists commands in the order they are added (the order of
	// commands below, subcommands as their group adds them), not sorted.
	cobra.EnableCommandSorting = false
}

// commands are keygate's top-level commands, in the order help lists
// them. A new command is a file with its constructor, and a line here.
var commands = []func(env) *cobra.Command{
	newServeCmd,
	newKeysCmd,
	newGrantsCmd,
	newAuditCmd,
	newWebhooksCmd,
	newSecretScanningCmd,
	newAdminTokenCmd,
	newMigrateCmd,
	newCheckCmd,
	newVersionCmd,
}

// Annotations a command may carry for its help.
const (
	annArgs     = "keygate/args"     // the Arguments section: "ID  what it is"
	annExit     = "keygate/exit"     // the Exit status section, if not exitDefault
	annRequired = "keygate/required" // on a flag: the command cannot run without it
)

const exitDefault = `0  success
1  the command failed (not found, database unreachable, …): the message says why
2  usage error: unknown command or flag, missing or bad argument or flag value`

func newRoot(e env) *cobra.Command {
	root := &cobra.Command{
		Use:   "keygate",
		Short: "Keygate: API keys for Envoy (ext_authz) and forward-auth proxies",
		Long: `Keygate checks API keys for Envoy's ext_authz filter (gRPC) and for proxies
that ask over HTTP (nginx auth_request, Caddy forward_auth, Traefik
forwardAuth): key, status, organization grants, scopes and rate limits.

serve, migrate, keys and grants read the config file named by --config or
$KEYGATE_CONFIG (else built-in defaults) and KEYGATE_* environment
variables; keys and grants need the database that migrate or serve made.`,
		Example: `  keygate migrate
  keygate keys create --tenant acme --scopes patients:read
  keygate serve
  keygate check --key "$KEY" --path /api/v1/patients --ext keygate.scopes=patients:read
  keygate help keys create`,
		Args:          cobra.ArbitraryArgs,
		SilenceErrors: true, // report prints them, once
		SilenceUsage:  true, // an error is one line and a hint, never the whole usage
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				writeHelp(e.stderr, c)
				return &exitError{code: 2}
			}
			return unknownCommand(c, args[0])
		},
		PersistentPreRunE: func(c *cobra.Command, _ []string) error { return checkRequired(c) },
	}
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.SetHelpFunc(func(c *cobra.Command, _ []string) { writeHelp(c.OutOrStdout(), c) })
	root.SetFlagErrorFunc(flagError)
	root.SetHelpCommand(newHelpCmd())
	for _, newCmd := range commands {
		root.AddCommand(newCmd(e))
	}
	// Cobra adds help and completion at Execute; made now, they get the
	// same help flag and order as the others.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		comp.Short = "print a shell completion script: bash, zsh, fish or powershell"
		comp.Args, comp.RunE = cobra.ArbitraryArgs, groupRun
	}
	walk(root, func(c *cobra.Command) {
		c.Flags().SortFlags = false // as each command defines them: the important first
		c.SuggestionsMinimumDistance = 2
		c.Flags().BoolP("help", "h", false, "show this help and exit")
	})
	return root
}

func walk(c *cobra.Command, f func(*cobra.Command)) {
	f(c)
	for _, sub := range c.Commands() {
		walk(sub, f)
	}
}

// newHelpCmd is 'keygate help [command]': the same text as --help, and
// exit status 2 for a command that does not exist.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "show help for keygate or one of its commands",
		Long:  "Show help for keygate or one of its commands: what it does, its arguments, flags, examples and exit status.",
		Example: `  keygate help keys
  keygate help keys create`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return &exitError{code: 2, err: fmt.Errorf("unknown help topic %q", strings.Join(args, " ")), hint: "Run 'keygate help' for the commands."}
			}
			writeHelp(c.OutOrStdout(), target)
			return nil
		},
	}
}

// group makes a command that only holds subcommands.
func group(use, short, long string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Long: long, Args: cobra.ArbitraryArgs, RunE: groupRun}
}

// groupRun runs a group without a subcommand, or with one it lacks.
func groupRun(c *cobra.Command, args []string) error {
	if len(args) == 0 {
		return usageError(c, "%s: need a subcommand: %s", c.Name(), subcommandNames(c))
	}
	return unknownCommand(c, args[0])
}

func subcommandNames(c *cobra.Command) string {
	var names []string
	for _, sub := range c.Commands() {
		if sub.IsAvailableCommand() {
			names = append(names, sub.Name())
		}
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

func unknownCommand(c *cobra.Command, name string) error {
	what := "command"
	if c.HasParent() {
		what = "subcommand"
	}
	msg := fmt.Sprintf("unknown %s %q", what, name)
	if s := c.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %q?)", s[0])
	} else if c.HasParent() {
		msg += " (want " + subcommandNames(c) + ")"
	}
	return usageError(c, "%s", msg)
}

// usageError is a mistake in the command line: exit status 2, and a hint
// where the usage is.
func usageError(c *cobra.Command, format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...), hint: fmt.Sprintf("Run '%s --help' for usage.", c.CommandPath())}
}

// valueError is a bad value: exit status 2; the message is its own hint.
func valueError(format string, a ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, a...)}
}

// noArgs is the Args of commands that take none.
func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError(c, "unexpected argument %q", args[0])
	}
	return nil
}

// oneArg is the Args of commands that take one argument, what.
func oneArg(what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usageError(c, "need exactly one argument: the %s", what)
		}
		return nil
	}
}

// required marks flags a command cannot run without: their help says so,
// and checkRequired refuses to run the command without them. A flag given
// an empty value (--scopes ”) counts as given.
func required(c *cobra.Command, names ...string) {
	for _, n := range names {
		if f := c.Flags().Lookup(n); f != nil { // TestHelp checks every required flag says so
			f.Usage += " (required)"
			c.Flags().SetAnnotation(n, annRequired, []string{"true"})
		}
	}
}

func checkRequired(c *cobra.Command) error {
	var missing []*pflag.Flag
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if _, ok := f.Annotations[annRequired]; ok && !f.Changed {
			missing = append(missing, f)
		}
	})
	switch len(missing) {
	case 0:
		return nil
	case 1:
		_, usage := pflag.UnquoteUsage(missing[0])
		return usageError(c, "--%s is required: %s", missing[0].Name, strings.TrimSuffix(usage, " (required)"))
	}
	names := make([]string, len(missing))
	for i, f := range missing {
		names[i] = "--" + f.Name
	}
	return usageError(c, "%s and %s are required", strings.Join(names[:len(names)-1], ", "), names[len(names)-1])
}

// flagError rewords pflag's errors for a person: a bad value names the
// flag and says what it takes; a Go-style -flag gets told about --flag.
func flagError(c *cobra.Command, err error) error {
	var bad *pflag.InvalidValueError
	var unknown *pflag.NotExistError
	switch {
	case errors.As(err, &bad):
		f := bad.GetFlag()
		switch f.Value.Type() {
		case "duration":
			return valueError("--%s: %v", f.Name, errors.Unwrap(err))
		case "int":
			return valueError("--%s: %q is not a whole number", f.Name, bad.GetValue())
		case "bool":
			return valueError("--%s: %q is not true or false", f.Name, bad.GetValue())
		}
		return valueError("--%s: %q: %v", f.Name, bad.GetValue(), errors.Unwrap(err))
	case errors.As(err, &unknown) && unknown.GetSpecifiedShortnames() != "":
		name, _, _ := strings.Cut(unknown.GetSpecifiedShortnames(), "=")
		if c.Flags().Lookup(name) != nil {
			return usageError(c, "unknown flag -%s: flags take two dashes: --%s", name, name)
		}
	}
	return usageError(c, "%v", err)
}

// writeHelp prints a command's help: what it does, usage, arguments,
// subcommands, flags, examples and exit status.
func writeHelp(w io.Writer, c *cobra.Command) {
	about := c.Long
	if about == "" {
		about = c.Short
	}
	fmt.Fprintf(w, "%s\n\nUsage:\n", strings.TrimSpace(about))
	switch {
	case !c.HasParent():
		fmt.Fprintf(w, "  %s <command> [flags]\n  %s help [command]\n", c.Name(), c.Name())
	case c.HasAvailableSubCommands():
		fmt.Fprintf(w, "  %s <command> [flags]\n", c.CommandPath())
	default:
		fmt.Fprintf(w, "  %s\n", c.UseLine())
	}
	if a := c.Annotations[annArgs]; a != "" {
		fmt.Fprintf(w, "\nArguments:\n%s\n", indent(a))
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintln(w, "\nCommands:")
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() || sub.Name() == "help" {
				fmt.Fprintf(w, "  %-*s %s\n", sub.NamePadding(), sub.Name(), sub.Short)
			}
		}
	}
	if fs := c.LocalFlags(); fs.HasAvailableFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
	if c.Example != "" {
		fmt.Fprintf(w, "\nExamples:\n%s\n", strings.TrimRight(c.Example, "\n"))
	}
	if c.Runnable() && !c.HasAvailableSubCommands() {
		exit := c.Annotations[annExit]
		if exit == "" {
			exit = exitDefault
		}
		fmt.Fprintf(w, "\nExit status:\n%s\n", indent(exit))
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's arguments, flags, examples and exit status.\n", c.CommandPath())
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}
