package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/plugins"
)

func init() {
	commands["plugin"] = command{summary: "inspect a remediation plugin binary (plugin info PATH)", run: cmdPlugin}
}

func cmdPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "info" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintln(stdout, "usage: medic plugin info [flags] PATH")
			return nil
		}
		fmt.Fprintln(stderr, "usage: medic plugin info [flags] PATH")
		return errUsage
	}
	return cmdPluginInfo(ctx, args[1:], stdout, stderr)
}

// cmdPluginInfo starts the plugin once, prints its Info and the sha256 to
// paste into config, and stops it.
func cmdPluginInfo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plugin info", "[flags] PATH", stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	startTimeout := fs.Duration("start-timeout", plugins.DefaultStartTimeout, "how long the plugin may take to start")
	var lf logFlags
	lf.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0, err: errors.New("")}
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "medic plugin info: exactly one PATH is required")
		fs.Usage()
		return errUsage
	}
	if lf.level == "info" {
		lf.level = "warn" // the plugin's own chatter only when asked for
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	in, err := plugins.Inspect(ctx, fs.Arg(0), *startTimeout, logger)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(in)
	}
	printInspection(stdout, in)
	return nil
}

var keyUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func printInspection(w io.Writer, in plugins.Inspection) {
	i := in.Info
	fmt.Fprintf(w, "name:         %s\n", i.Name)
	fmt.Fprintf(w, "version:      %s\n", i.Version)
	fmt.Fprintf(w, "protocol:     %d\n", i.ProtocolVersion)
	if i.Description != "" {
		fmt.Fprintf(w, "description:  %s\n", i.Description)
	}
	fmt.Fprintf(w, "path:         %s\n", in.Path)
	fmt.Fprintf(w, "sha256:       %s\n", in.SHA256)
	fmt.Fprintf(w, "started in:   %s\n", in.Startup.Round(time.Millisecond))
	if len(i.ConfigSchema) > 0 {
		var buf bytes.Buffer
		if json.Indent(&buf, i.ConfigSchema, "  ", "  ") != nil {
			buf.Reset()
			buf.Write(i.ConfigSchema)
		}
		fmt.Fprintf(w, "\nconfig schema:\n  %s\n", strings.TrimSpace(buf.String()))
	}
	name := keyUnsafe.ReplaceAllString(i.Name, "-")
	if name == "" || !plugins.ValidName(name) {
		name = keyUnsafe.ReplaceAllString(filepath.Base(in.Path), "-")
	}
	fmt.Fprintf(w, "\nconfig:\n\nplugins:\n  %s:\n    path: %s\n    sha256: %s\n", name, in.Path, in.SHA256)
	fmt.Fprintf(w, "\nactions:\n  my-action:\n    plugin:\n      name: %s\n      config: {}\n", name)
}
