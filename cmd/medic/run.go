package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/version"
	"github.com/medic-sidecar/medic/supervisor"
	_ "github.com/medic-sidecar/medic/supervisor/builtin" // every built-in probe and action kind
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/kube"
)

// shutdownGrace bounds an orderly shutdown after SIGINT/SIGTERM.
const shutdownGrace = 10 * time.Second

func init() {
	commands["run"] = command{summary: "run the supervisor with a config file", run: cmdRun, examples: `medic run --config /etc/medic/medic.yaml
medic run --config medic.yaml --dry-run --log-format text --log-level debug`}
	commands["validate"] = command{summary: "check a config file and list every problem", run: cmdValidate, examples: `medic validate --config examples/spire-agent.yaml`}
	commands["version"] = command{summary: "print the version, revision and Go version", run: cmdVersion, examples: `medic version
medic --version`}
}

// logFlags are shared by commands that log.
type logFlags struct {
	format, level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "json", "log format: json or text")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
}

// logger is the logger the flags ask for, writing to w; a bad flag is
// said on w and is a usage error.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		fmt.Fprintf(w, "--log-level: %v\n", err)
		return nil, errUsage
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch l.format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	fmt.Fprintf(w, "--log-format must be json or text, not %q\n", l.format)
	return nil, errUsage
}

// newFlagSet returns a flag set that prints errors and usage (with the
// command's examples) on stderr; run hands a command stdout as its stderr
// when help was asked for.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: medic %s %s\n", name, synopsis)
		if c := commands[name]; c.summary != "" {
			fmt.Fprintf(stderr, "\n%s.\n", strings.ToUpper(c.summary[:1])+c.summary[1:])
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(stderr, "\nflags:")
			fs.PrintDefaults()
		}
		if ex := commands[name].examples; ex != "" {
			fmt.Fprintf(stderr, "\nexamples:\n  %s\n", strings.ReplaceAll(ex, "\n", "\n  "))
		}
	}
	return fs
}

// parseFlags parses args; bad flags or stray arguments are usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error { return parseArgs(fs, args, 0) }

// parseArgs parses args, which must leave exactly n positional arguments;
// -h is an exit-0 error (the usage is printed), anything else wrong is a
// usage error.
func parseArgs(fs *flag.FlagSet, args []string, n int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitCode(0)
		}
		return errUsage
	}
	switch {
	case fs.NArg() > n:
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args()[n:], " "))
	case fs.NArg() < n:
		fmt.Fprintln(fs.Output(), "missing arguments")
	default:
		return nil
	}
	fs.Usage()
	return errUsage
}

// loadConfig loads and validates path; problems become an exit-2 error
// listing each one on its own line.
func loadConfig(path string, stderr io.Writer) (*config.Config, error) {
	if path == "" {
		fmt.Fprintln(stderr, "--config is required")
		return nil, errUsage
	}
	c, err := config.LoadFile(path)
	if err == nil {
		for _, w := range c.Warnings {
			fmt.Fprintf(stderr, "%s: warning: %v\n", path, w)
		}
		return c, nil
	}
	return nil, problems(stderr, path, "", err)
}

// problems lists every problem in err on w, each with its path, under
// "FILE: N [what ]problem(s):", and is the usage exit.
func problems(w io.Writer, file, what string, err error) error {
	ps := cfg.Sorted(err)
	fmt.Fprintf(w, "%s: %d %sproblem(s):\n", file, len(ps), what)
	for _, p := range ps {
		fmt.Fprintf(w, "  %v\n", p)
	}
	return exitCode(exitUsage)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "--config FILE [flags]", stderr)
	path := fs.String("config", "", "config file (YAML)")
	dryRun := fs.Bool("dry-run", false, "decide and record, but perform no action (overrides config dryRun)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: in-cluster config when in a pod; none otherwise)")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	c, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	routeGRPCLogs(logger)
	if *dryRun {
		c.DryRun = true
	}
	kc, _, err := kube.NewClient(kube.Options{Kubeconfig: *kubeconfig, Logger: logger})
	if err != nil {
		return err
	}
	k, err := kube.NewIntegration(kc, kube.IntegrationOptions{Clock: clock.Real{}, Logger: logger.With("component", "kube")})
	if err != nil {
		return err
	}
	s, err := supervisor.New(supervisor.Options{Config: c, Logger: logger, Kube: k})
	if err != nil {
		return err
	}
	return runUntilDone(ctx, s, logger)
}

// runUntilDone runs s and, once ctx ends, gives it shutdownGrace to stop.
func runUntilDone(ctx context.Context, s *supervisor.Supervisor, logger *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	select {
	case err := <-done:
		return err
	case <-time.After(shutdownGrace):
		logger.Error("shutdown did not finish in time; exiting", "grace", shutdownGrace)
		return fmt.Errorf("shutdown took longer than %s", shutdownGrace)
	}
}

func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "--config FILE", stderr)
	path := fs.String("config", "", "config file (YAML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	// Plugin binaries (sha256) and each plugin's own check of its actions' config.
	if err := validatePlugins(ctx, c, slog.New(slog.DiscardHandler)); err != nil {
		return problems(stderr, *path, "", err)
	}
	for _, w := range ruleWarnings(c) {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "%s: valid (%s, %s, %s", *path, plural(len(c.Probes), "probe"), plural(countRules(c), "rule"), plural(len(c.Actions), "action"))
	if c.DryRun {
		fmt.Fprint(stdout, ", dry run")
	}
	fmt.Fprintln(stdout, ")")
	printGuards(stdout, c)
	return nil
}

// printGuards lists each action's guards, in the order they are checked,
// and which are inactive (medic validate).
func printGuards(w io.Writer, c *config.Config) {
	for _, n := range config.SortedKeys(c.Sources) {
		fmt.Fprintf(w, "source %s: %s\n", n, c.Sources[n].Describe())
	}
	for _, ag := range c.Guards(nil) {
		fmt.Fprintf(w, "action %s guards:\n", ag.Action)
		for _, g := range ag.Guards {
			state := "active"
			if !g.Active {
				state = "INACTIVE"
			}
			fmt.Fprintf(w, "  %-13s %-8s %s\n", g.Guard, state, g.Detail)
		}
	}
}

func cmdVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, version.Get())
	return nil
}

// plural writes "1 probe", "2 probes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
