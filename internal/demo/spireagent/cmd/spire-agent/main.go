// Command spire-agent runs the SPIRE-like agent test peer (package
// spireagent) as its own process named spire-agent, so that medic's
// restart mode signal finds it by name as it finds the real agent. The
// node E2E tests (internal/nodee2e) run it as a container. It prints
// "listening <metrics URL> control <control URL>" once it serves and exits
// on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/medic-sidecar/medic/internal/demo/spireagent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "spire-agent:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("spire-agent", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9988", "metrics, /live and /ready address")
	control := fs.String("control", "127.0.0.1:0", "test-only control endpoints' address")
	interval := fs.Duration("interval", spireagent.DefaultInterval, "sync interval")
	host := fs.String("host", "", "host label (default: the hostname)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	agent := spireagent.New(spireagent.Options{
		Interval: *interval, Addr: *listen, ControlAddr: *control, Host: *host,
		StartupTimeout: -1, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	url, err := agent.Start()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %s/metrics control %s at %s\n", url, agent.ControlURL(), time.Now().UTC().Format(time.RFC3339Nano))
	<-ctx.Done()
	return agent.Close()
}
