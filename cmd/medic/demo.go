package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/medic-sidecar/medic/internal/demo/spireagent"
	"github.com/medic-sidecar/medic/supervisor"
	"github.com/medic-sidecar/medic/supervisor/config"
	"github.com/medic-sidecar/medic/supervisor/remedy"
	"github.com/medic-sidecar/medic/supervisor/rules"
)

//go:embed demo.yaml
var demoConfig string

func init() {
	commands["demo"] = command{summary: "watch medic heal a SPIRE-like agent on loopback (no setup needed)", run: cmdDemo,
		examples: "medic demo\nmedic demo --logs"}
	commands["demo-agentctl"] = command{run: cmdDemoAgentctl} // hidden: the demo's remediation
	commands["demo-peer"] = command{run: cmdDemoPeer}         // hidden: a SPIRE-like agent for trying configs
}

// demoTimeline prints the loop as it happens, one line per step, with the
// time since the demo started.
type demoTimeline struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	done  chan string // when an incident closes: the action that fixed it, or ""
	held  chan struct{}
	once  sync.Once
}

func (d *demoTimeline) printf(tag, format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.w, "%6.1fs  %-9s %s\n", time.Since(d.start).Seconds(), tag, fmt.Sprintf(format, args...))
}

func (d *demoTimeline) transition(t rules.Transition) {
	a := t.Alert
	switch {
	case t.Resolved():
		d.printf("resolved", "%s: the condition no longer holds", a.Rule)
	case t.To == rules.StatePending:
		d.printf("pending", "%s (value %.3g): the condition must hold for the rule's `for` before it fires", a.Rule, a.Value)
	case t.To == rules.StateFiring:
		d.printf("firing", "%s %s: %s", a.Rule, labelString(a.Labels), a.Annotations["summary"])
	case t.From == rules.StatePending && t.To == rules.StateInactive:
		d.printf("inactive", "%s: condition cleared before it fired", a.Rule)
	}
}

// labelString shows the labels that tell one alert from another (the
// rule's own severity says nothing about this instance).
func labelString(l labels.Labels) string {
	var parts []string
	l.Range(func(lb labels.Label) {
		if lb.Name != labels.AlertName && lb.Name != "severity" {
			parts = append(parts, lb.Name+"="+lb.Value)
		}
	})
	return "{" + strings.Join(parts, ", ") + "}"
}

// Record implements remedy.Sink.
func (d *demoTimeline) Record(ev remedy.Event) {
	switch ev.Type {
	case remedy.IncidentOpened:
		d.printf("incident", "%s opened for %s; walking the ladder", ev.IncidentID, ev.Alert)
	case remedy.RemediationStarted:
		d.printf("attempt", "%s", ev.Message)
	case remedy.RemediationSuppressed:
		if ev.Reason == remedy.ReasonPrecondition {
			d.once.Do(func() { close(d.held) })
		}
		d.printf("held", "%s attempt %d/%d suppressed (%s): %s", ev.Action, ev.Attempt, ev.MaxAttempts, ev.Reason, ev.Message)
	case remedy.RemediationFailed:
		msg := ev.Message
		if out := strings.TrimSpace(ev.Output); out != "" {
			msg += " — output: " + strings.SplitN(out, "\n", 2)[0]
		}
		d.printf("failed", "%s attempt %d/%d (%s): %s", ev.Action, ev.Attempt, ev.MaxAttempts, ev.Reason, msg)
	case remedy.RemediationSucceeded:
		d.printf("verified", "%s attempt %d/%d: %s", ev.Action, ev.Attempt, ev.MaxAttempts, strings.TrimSpace(ev.Message))
	case remedy.IncidentExhausted:
		d.printf("exhausted", "%s: %s", ev.IncidentID, ev.Message)
	case remedy.IncidentRetried:
		d.printf("retry", "%s: %s", ev.IncidentID, ev.Message)
	case remedy.IncidentResolved:
		d.printf("closed", "%s: %s", ev.IncidentID, ev.Message)
		select {
		case d.done <- ev.Action: // the action that fixed it, "" if none
		default:
		}
	}
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[--duration D] [--keep]", stderr)
	duration := fs.Duration("duration", 0, "keep running this long after the first cycle, with /status and /api/v1 up (0: exit after one full cycle)")
	keep := fs.Bool("keep", false, "keep the state directory (audit log, budgets) instead of removing it on exit")
	listen := fs.String("listen", "127.0.0.1:0", "address for medic's HTTP endpoints")
	logs := fs.Bool("logs", false, "also print medic's own logs (text) on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger := slog.New(slog.DiscardHandler)
	if *logs {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	stateDir, err := os.MkdirTemp("", "medic-demo-")
	if err != nil {
		return err
	}
	auditPath := filepath.Join(stateDir, "audit.jsonl")
	// Registered first, so it runs last: after medic has stopped writing.
	defer func() {
		if *keep {
			fmt.Fprintf(stdout, "Kept %s (audit log, budgets, incidents of this run).\n", stateDir)
		} else {
			os.RemoveAll(stateDir)
		}
	}()

	// The SPIRE-like agent, syncing every second, and a TCP listener standing in for its server.
	agent := spireagent.New(spireagent.Options{Interval: time.Second, Host: "demo-node", StartupTimeout: -1})
	agentURL, err := agent.Start()
	if err != nil {
		return err
	}
	defer agent.Close()
	server, err := newFakeServer()
	if err != nil {
		return err
	}
	defer server.close()

	tl := &demoTimeline{w: stdout, start: time.Now(), done: make(chan string, 1), held: make(chan struct{})}
	s, err := newDemoSupervisor(*listen, stateDir, agentURL, agent.ControlURL(), server.addr, logger, tl)
	if err != nil {
		return err
	}
	base := "http://" + s.Addr()
	printDemoIntro(stdout, base, agentURL, server.addr, auditPath, *keep)

	ctx, cancel := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	stop := sync.OnceValue(func() error { cancel(); return <-runErr })
	defer stop()
	go watchSignal(ctx, s, tl)
	scriptErr := make(chan error, 1)
	go func() { scriptErr <- demoScript(ctx, tl, server, agent) }()

	fixedBy, closed, err := waitDemoCycle(ctx, tl, scriptErr, runErr)
	switch {
	case err != nil:
		return err
	case !closed && ctx.Err() != nil:
		fmt.Fprintln(stdout, "\ninterrupted")
		stop()
		return nil
	case !closed:
		stop()
		*keep = true // the audit log is the evidence
		return errors.New("the demo did not complete a cycle within 90 s; run with --logs to see why")
	case fixedBy == "":
		stop()
		*keep = true
		return fmt.Errorf("the incident closed without a remediation taking effect; see %s", auditPath)
	}
	fmt.Fprintf(stdout, "\nOne full cycle: signal → pending → firing → held by the precondition → %s → verified → resolved.\n", fixedBy)
	if *duration <= 0 {
		fmt.Fprintln(stdout, "medic has stopped; `medic demo --duration 5m` keeps it running afterwards, to browse its /status.")
		return stop()
	}
	fmt.Fprintf(stdout, "Still running for %s: open %s/status in a browser, or ask its store with PromQL,\n", *duration, base)
	fmt.Fprintf(stdout, "e.g. promtool query instant %s 'medic_probe_up' (Ctrl-C to stop).\n", base)
	select {
	case <-ctx.Done():
	case <-time.After(*duration):
	}
	return stop()
}

// newDemoSupervisor builds medic from the embedded demo config, pointed at
// the demo's agent, server and state directory, listening on listen.
func newDemoSupervisor(listen, stateDir, agentURL, controlURL, serverAddr string, logger *slog.Logger, tl *demoTimeline) (*supervisor.Supervisor, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	text := strings.NewReplacer("@LISTEN@", ln.Addr().String(), "@STATE_DIR@", stateDir, "@AGENT_URL@", agentURL,
		"@SERVER_ADDR@", serverAddr, "@SELF@", self, "@CONTROL_URL@", controlURL).Replace(demoConfig)
	c, err := config.Parse([]byte(text))
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("embedded demo config: %w", err)
	}
	s, err := supervisor.New(supervisor.Options{Config: c, Logger: logger, Listener: ln,
		Sinks: []remedy.Sink{tl}, OnTransition: tl.transition})
	if err != nil {
		ln.Close()
		return nil, err
	}
	return s, nil
}

func printDemoIntro(w io.Writer, base, agentURL, serverAddr, auditPath string, keep bool) {
	fmt.Fprintf(w, "medic demo — a SPIRE agent whose upstream fails, and medic healing it.\n\n")
	fmt.Fprintf(w, "  SPIRE-like agent   %s/metrics (syncs every 1 s, backs off ×1.5 on errors like the real one)\n", agentURL)
	fmt.Fprintf(w, "  its server         %s (a TCP listener medic probes)\n", serverAddr)
	fmt.Fprintf(w, "  medic              %s/status   %s/metrics   %s/api/v1/\n", base, base, base)
	fmt.Fprintf(w, "  rule               no successful sync (status=\"OK\") in the last 5 s, for 2 s; judged once 5 s of history exist\n")
	fmt.Fprintf(w, "  ladder             restart-agent, only while the server is reachable; verify 10 s\n")
	if keep {
		fmt.Fprintf(w, "  audit log          %s\n\n", auditPath)
	} else {
		fmt.Fprintf(w, "  audit log          %s (removed on exit; --keep keeps it)\n\n", auditPath)
	}
}

// waitDemoCycle waits, at most 90 s, for the incident to close: closed
// reports whether it did and fixedBy names the remediation that took
// effect (empty: none did). An error is the script's or medic's own.
func waitDemoCycle(ctx context.Context, tl *demoTimeline, scriptErr, runErr chan error) (fixedBy string, closed bool, err error) {
	deadline := time.After(90 * time.Second)
	select {
	case fixedBy = <-tl.done:
		return fixedBy, true, nil
	case err := <-scriptErr:
		if err != nil && ctx.Err() == nil {
			return "", false, err
		}
		select {
		case fixedBy = <-tl.done:
			return fixedBy, true, nil
		case <-ctx.Done():
		case <-deadline:
		}
	case err := <-runErr:
		runErr <- err // for stop
		return "", false, fmt.Errorf("medic stopped: %w", err)
	case <-ctx.Done():
	case <-deadline:
	}
	return "", false, nil
}

// demoScript breaks the agent's upstream, waits until medic holds the
// restart (its precondition needs the server), then brings the server back.
func demoScript(ctx context.Context, tl *demoTimeline, server *fakeServer, agent *spireagent.Peer) error {
	if !sleepCtx(ctx, 2500*time.Millisecond) {
		return ctx.Err()
	}
	tl.printf("FAULT", "the SPIRE server goes down: the agent's syncs now fail with status=\"Unavailable\"")
	server.stop()
	if err := agent.SetMode(spireagent.Failing("Unavailable")); err != nil {
		return err
	}
	// Keep the server down until medic has decided to hold the restart
	// (bounded, in case the alert never fires), then a little longer.
	select {
	case <-tl.held:
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	if !sleepCtx(ctx, 2*time.Second) {
		return ctx.Err()
	}
	tl.printf("FAULT", "the SPIRE server is back, but the agent keeps waiting out its sync backoff (×1.5 per failure)")
	if err := server.start(); err != nil {
		return err
	}
	return agent.SetMode(spireagent.Healthy())
}

// watchSignal prints when the failure first shows on the agent's page.
func watchSignal(ctx context.Context, s *supervisor.Supervisor, tl *demoTimeline) {
	const name = "spire_agent_manager_sync_fetch_entries_updates"
	for ctx.Err() == nil {
		for _, p := range s.Store().Latest(func(n string) bool { return n == name }) {
			if st := p.Labels.Get("status"); st != "OK" {
				tl.printf("signal", "%s{status=%q} = %g appeared on the agent's page", name, st, p.V)
				return
			}
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// fakeServer is a TCP listener standing in for the SPIRE server, so the
// reachability probe has something to connect to; stop closes it.
type fakeServer struct {
	addr string
	mu   sync.Mutex
	ln   net.Listener
}

func newFakeServer() (*fakeServer, error) {
	f := &fakeServer{addr: "127.0.0.1:0"}
	if err := f.start(); err != nil {
		return nil, err
	}
	f.addr = f.ln.Addr().String()
	return f, nil
}

func (f *fakeServer) start() error {
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	return nil
}

func (f *fakeServer) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
		f.ln = nil
	}
}

func (f *fakeServer) close() { f.stop() }

// cmdDemoAgentctl is the demo's remediation command: it asks the SPIRE-like
// agent's test-only control endpoint to restart the agent.
func cmdDemoAgentctl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo-agentctl", "--url CONTROL_URL restart|syncs", stderr)
	url := fs.String("url", "", "control URL of the demo agent")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *url == "" {
		fs.Usage()
		return errUsage
	}
	method, path := http.MethodPost, "/control/restart"
	if fs.Arg(0) == "syncs" {
		method, path = http.MethodGet, "/control/syncs"
	} else if fs.Arg(0) != "restart" {
		fs.Usage()
		return errUsage
	}
	req, err := http.NewRequestWithContext(ctx, method, *url+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "agent %s: HTTP %d %s\n", fs.Arg(0), resp.StatusCode, strings.TrimSpace(string(body)))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("control endpoint answered %s", resp.Status)
	}
	return nil
}

// cmdDemoPeer runs the SPIRE-like agent (and a TCP stand-in for its
// server) until interrupted, for trying configs and measuring footprint.
func cmdDemoPeer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo-peer", "[--listen ADDR] [--server ADDR] [--interval D]", stderr)
	listen := fs.String("listen", "127.0.0.1:9988", "agent metrics address")
	serverAddr := fs.String("server", "127.0.0.1:8081", "TCP address standing in for the SPIRE server (empty: none)")
	interval := fs.Duration("interval", 5*time.Second, "sync interval")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	agent := spireagent.New(spireagent.Options{Interval: *interval, Addr: *listen})
	url, err := agent.Start()
	if err != nil {
		return err
	}
	defer agent.Close()
	if *serverAddr != "" {
		srv := &fakeServer{addr: *serverAddr}
		if err := srv.start(); err != nil {
			return err
		}
		defer srv.close()
	}
	fmt.Fprintf(stdout, "SPIRE-like agent: %s/metrics  control: %s/control/{mode,restart,syncs}\n", url, agent.ControlURL())
	<-ctx.Done()
	return nil
}
