// Command relay runs the KubeArmor-compatible relay test peer as its own
// process, so tests and scripts/measure-relay.sh can kill it for real.
// It prints "listening <addr>" on stdout once it serves, and stops cleanly
// on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/medic-sidecar/medic/internal/testpeers/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:32767", "listen address")
	interval := fs.Duration("interval", relay.DefaultInterval, "time between events on each stream (negative: none)")
	health := fs.Bool("health", false, "also serve grpc.health.v1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := relay.Start(relay.Options{Addr: *listen, Interval: *interval, Health: *health})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening %s\n", s.Addr())
	<-ctx.Done()
	s.Close()
	return nil
}
