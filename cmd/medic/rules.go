package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/rules"
	"github.com/medic-sidecar/medic/supervisor/ruletest"
)

// ruleWarnings lists selectors in the config's rules and preconditions
// that nothing medic stores can match (medic validate prints them).
func ruleWarnings(c *config.Config) []string {
	var probes []rules.ProbeInfo
	for _, p := range c.Probes {
		probes = append(probes, rules.ProbeInfo{Name: p.Name, Kind: p.Kind})
	}
	extra := map[string]string{}
	for n, a := range c.Actions {
		for i, e := range a.Requires.Local() {
			k := "actions." + n + ".requires"
			if i > 0 {
				k += fmt.Sprintf("[%d]", i)
			}
			extra[k] = e
		}
	}
	return rules.Lint(c.RuleGroups(), extra, probes)
}

// countRules counts rules[] and every rule of the rule files.
func countRules(c *config.Config) int {
	n := 0
	for _, g := range c.RuleGroups() {
		n += len(g.Rules)
	}
	return n
}

func init() {
	commands["test"] = command{summary: "test rules FILE...: run rule unit tests (promtool's format)", run: cmdTest,
		examples: "medic test rules examples/rules/spire-agent.test.yml\nmedic test rules examples/rules/*.test.yml"}
}

// cmdTest runs `medic test rules FILE...`: exit 0 all passed, 1 a test
// failed, 2 bad usage.
func cmdTest(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && wantsHelp(args[:1]) {
		// run hands stdout as stderr when help is asked for.
		fmt.Fprintf(stderr, "usage: medic test rules FILE...\n\nexamples:\n  %s\n", strings.ReplaceAll(commands["test"].examples, "\n", "\n  "))
		return nil
	}
	if len(args) == 0 || args[0] != "rules" {
		fmt.Fprintln(stderr, "usage: medic test rules FILE...")
		return errUsage
	}
	fs := newFlagSet("test rules", "FILE...", stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	if ruletest.Run(stdout, stderr, fs.Args()...) != 0 {
		return exitCode(1)
	}
	return nil
}
