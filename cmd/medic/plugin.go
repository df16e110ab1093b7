package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/plugins"
	"github.com/medic-sidecar/medic/supervisor/config"
)

func init() {
	commands["plugin"] = command{summary: "remediation plugins: info PATH | validate --config FILE", run: cmdPlugin}
}

const pluginUsage = `usage:
  medic plugin info [flags] PATH          start a plugin binary once; print its Info and sha256
  medic plugin validate --config FILE     check the config's plugin binaries and have each plugin
                                          validate the config of the actions that use it

examples:
  medic plugin info /usr/lib/medic/plugins/webhook
  medic plugin validate --config /etc/medic/medic.yaml`

func cmdPlugin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "info":
		return cmdPluginInfo(ctx, args[1:], stdout, stderr)
	case "validate":
		return cmdPluginValidate(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, pluginUsage)
		return nil
	}
	fmt.Fprintln(stderr, pluginUsage)
	return errUsage
}

// cmdPluginValidate loads the config, then runs the plugin checks that
// need the binaries (see validatePlugins).
func cmdPluginValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("plugin validate", "--config FILE", stderr)
	path := fs.String("config", "", "config file (YAML)")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if lf.level == "info" {
		lf.level = "warn"
	}
	logger, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	c, err := loadConfig(*path, stderr)
	if err != nil {
		return err
	}
	if err := validatePlugins(ctx, c, logger); err != nil {
		return problems(stderr, *path, "plugin ", err)
	}
	fmt.Fprintf(stdout, "%s: plugins valid (%d plugins)\n", *path, len(c.Plugins))
	return nil
}

// validatePlugins checks every plugin binary (exists, executable, sha256)
// and has each plugin validate the config of every action using it; lazy
// plugins are stopped again. `medic validate` should call it after
// loading the config.
func validatePlugins(ctx context.Context, c *config.Config, logger *slog.Logger) error {
	if len(c.Plugins) == 0 {
		return nil
	}
	h, err := plugins.New(c.Plugins, plugins.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer h.Stop()
	uses := map[string]*plugins.ActionConfig{}
	for name, a := range c.Actions {
		if pa, ok := a.Spec.(*plugins.ActionConfig); ok {
			uses[name] = pa
		}
	}
	return plugins.ValidateActions(ctx, h, uses)
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
			return exitCode(0)
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
		return err
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
