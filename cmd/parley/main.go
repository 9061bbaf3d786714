// Command parley is the Parley gateway: it connects a business's messaging
// accounts (Telegram, and more platforms as they land) to helpdesks through
// NATS JetStream. See the README for a tour, docs/operations.md and
// docs/events.md for the interface it keeps, and docs/contract-differences.md
// for where that interface departs from Parley's written contract.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/parley-gateway/parley/connectors/registry"
)

// Exit codes (CONTRACT §1).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

// Set by the linker: -ldflags "-X main.version=v1.2.3 -X main.commit=abc".
var (
	version = "dev"
	commit  = ""
)

// usageError makes main exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errInterrupted ends a command that SIGINT or SIGTERM stopped before its
// work was done: main prints where it stopped and exits 1. A command whose
// work is to run until stopped (serve, tail, demo --keep) returns nil
// instead.
var errInterrupted = errors.New("interrupted")

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what a subcommand may touch of the process, so tests can run
// subcommands in-process with their own streams and environment.
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	lookupEnv      func(string) (string, bool)
	// platforms are the connectors built in; nil is registry.All(). Tests
	// add one as the registry would.
	platforms registry.List
}

// registry returns the platforms this binary runs.
func (e *cliEnv) registry() registry.List {
	if e.platforms == nil {
		return registry.All()
	}
	return e.platforms
}

func commands() []command {
	return []command{
		{"serve", "run the gateway", runServe},
		{"demo", "run the whole pipeline on this machine against simulators", runDemo},
		{"config", "check a configuration, or print an example (config check | config example [PLATFORM])", runConfig},
		{"pair", "link a device session for a connector whose platform has one (pair <platform> --connector ID [--phone +E164])", runPair},
		{"tail", "follow canonical events live", runTail},
		{"reply", "send a reply and wait for its delivery status", runReply},
		{"dlq", "inspect and re-queue dead-lettered replies (dlq list | replay ID... | purge ID...)", runDLQ},
		{"healthcheck", "ask a running gateway's /readyz (/healthz with --live); exit 0 on a 200", runHealthcheck},
		{"version", "print version information", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, lookupEnv: os.LookupEnv}
	code := run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(env.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		}
		fmt.Fprintf(env.stderr, "parley %s: %v\n", c.name, err)
		var ue usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitRuntime
	}
	fmt.Fprintf(env.stderr, "parley: unknown command %q\n\n", args[0])
	printUsage(env.stderr)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Parley: one gateway between your customers' messaging apps and your helpdesk.")
	fmt.Fprintln(w, "\nUsage: parley <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery command has --help. Commands that read a configuration take --config FILE\n(default $PARLEY_CONFIG, else ./parley.yaml).")
}

// newFlags returns a FlagSet whose errors and help go to env.stderr and
// whose parse failures become usage errors.
func newFlags(env *cliEnv, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("parley "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: parley %s\n\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses fs from args with flags allowed anywhere among the
// positional arguments, which fs.Args() then returns in order: `dlq replay
// 12 --region eu` is `dlq replay --region eu 12`. "--" ends the flags.
// Otherwise the flag package's rules hold: a boolean flag takes no separate
// value, any other flag takes "--name=value" or the next argument, whatever
// it looks like.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var flags, positional []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") || isBoolFlag(fs, name) || i+1 == len(args) {
			continue
		}
		i++
		flags = append(flags, args[i])
	}
	// Unknown flags and missing or bad values fail here, as fs.Parse words
	// them; the second Parse only hands the positional arguments to fs.
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// isBoolFlag reports whether fs has a flag name that takes no value, as the
// flag package decides it.
func isBoolFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

func configFlag(fs *flag.FlagSet, env *cliEnv) *string {
	def := env.getenv("PARLEY_CONFIG")
	if def == "" {
		def = "./parley.yaml"
	}
	return fs.String("config", def, "configuration `FILE`")
}
