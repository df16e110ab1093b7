// Command medic is a self-healing supervisor sidecar: it watches a
// security agent's signals, evaluates alerting rules locally and walks a
// remediation ladder until the agent is healthy again.
//
// main only parses the command line and wires signals; the work is in
// package supervisor.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// exitUsage is the exit code for bad usage and invalid config.
const exitUsage = 2

// errUsage marks an error that should print usage and exit 2.
var errUsage = errors.New("usage")

// exitCode ends a command with this exit code; the command has already
// printed what there is to say (problems, or the help that was asked for).
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// command is one subcommand. To add one, put in its own file:
//
//	func init() {
//		commands["replay"] = command{summary: "…", examples: "medic replay …", run: cmdReplay}
//	}
//
// and build its flags with newFlagSet/parseFlags (see /work/coord/cli.md):
// help, -h/--help, completion and usage errors then work the same for it.
type command struct {
	// summary is the one line in `medic help`; empty hides the command.
	summary string
	// examples are shown by `medic help NAME` and NAME -h, one per line.
	examples string
	run      func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the subcommand table; each lives in its own file.
var commands = map[string]command{}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit code: 0,
// 1 for a failure, 2 for bad usage or an invalid config.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, args := args[0], args[1:]
	switch name {
	case "-h", "--help", "-help":
		usage(stdout)
		return 0
	case "-v", "--version", "-version":
		name = "version"
	case "help":
		if len(args) == 0 {
			usage(stdout)
			return 0
		}
		name, args = args[0], []string{"-h"}
		if _, ok := commands[name]; !ok {
			fmt.Fprintf(stderr, "medic help: unknown command %q\n\n", name)
			usage(stderr)
			return exitUsage
		}
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "medic: unknown command %q\n\n", name)
		usage(stderr)
		return exitUsage
	}
	if wantsHelp(args) {
		stderr = stdout // help is output asked for: stdout, exit 0
	}
	err := cmd.run(ctx, args, stdout, stderr)
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return exitUsage
	case errors.As(err, &code):
		return int(code)
	default:
		fmt.Fprintf(stderr, "medic %s: %v\n", name, err)
		return 1
	}
}

// wantsHelp reports whether args ask for help (-h, -help, --help before
// a "--"), which every command answers on stdout with exit 0.
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: medic <command> [flags]\n\ncommands:")
	for _, n := range visibleCommands() {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
flags:
  -h, --help     show help (also: medic help <command>, medic <command> -h)
  -v, --version  print the version

examples:
  medic demo
  medic validate --config /etc/medic/medic.yaml
  medic run --config /etc/medic/medic.yaml --log-format text
  source <(medic completion bash)
`)
}

// visibleCommands lists the commands that have a summary, sorted.
func visibleCommands() []string {
	var names []string
	for n, c := range commands {
		if c.summary != "" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}
