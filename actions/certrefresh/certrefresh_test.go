package certrefresh

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"gopkg.in/yaml.v3"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	wl "github.com/medic-sidecar/medic/internal/testpeers/workloadapi"
)

// The consumer is this test binary re-run with MEDIC_FAKE_CONSUMER set to
// a file: TestConsumerHelper appends "HUP" to it on every SIGHUP, the way
// nginx or envoy would reload their certificates.
const consumerEnv = "MEDIC_FAKE_CONSUMER"

func TestConsumerHelper(t *testing.T) {
	record := os.Getenv(consumerEnv)
	if record == "" {
		return // not a helper run
	}
	hup := make(chan os.Signal, 8)
	signal.Notify(hup, syscall.SIGHUP)
	if pf := os.Getenv("MEDIC_CONSUMER_PIDFILE"); pf != "" {
		_ = os.WriteFile(pf, []byte(strconv.Itoa(os.Getpid())), 0o644)
	}
	fmt.Println("ready")
	for range hup {
		f, err := os.OpenFile(record, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			os.Exit(3)
		}
		_, _ = f.WriteString("HUP\n")
		_ = f.Close()
	}
}

func consumerName() string { return fmt.Sprintf("consumer%d", os.Getpid()) }

// startConsumer runs the consumer under a unique executable name and
// returns the file where it records SIGHUPs.
func startConsumer(t *testing.T, pidFile string) (record string, cmd *exec.Cmd) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, consumerName())
	if err := os.Link(self, exe); err != nil {
		in, _ := os.ReadFile(self)
		if err := os.WriteFile(exe, in, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	record = filepath.Join(dir, "hups")
	cmd = exec.Command(exe, "-test.run=^TestConsumerHelper$")
	cmd.Env = append(os.Environ(), consumerEnv+"="+record, "MEDIC_CONSUMER_PIDFILE="+pidFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("consumer did not start: %q %v", line, err)
	}
	return record, cmd
}

// hups waits (bounded) until the consumer has recorded n SIGHUPs.
func hups(t *testing.T, record string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(record)
		got := strings.Count(string(b), "HUP\n")
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("consumer recorded %d SIGHUPs, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func decode(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	k, ok := actions.Lookup(Kind)
	if !ok {
		t.Fatal("certRefresh not registered")
	}
	c := k.NewConfig().(*Config)
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Decode(&n, c, "actions.refresh.certRefresh"); err != nil {
		return nil, err
	}
	return c, cfg.Prefix("actions.refresh.certRefresh", c.Validate())
}

func build(t *testing.T, clk clock.Clock, doc string) *Action {
	t.Helper()
	c, err := decode(t, doc)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(*c, actions.Env{Name: "refresh", Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

var (
	t0  = time.Date(2025, 7, 1, 9, 0, 0, 0, time.UTC)
	inc = actions.Incident{ID: "inc-9", Alert: "SVIDRotationOverdue", Attempt: 1, MaxAttempts: 3}
)

func ino(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestRefreshWritesAtomicallyAndSignalsConsumer(t *testing.T) {
	clk := clock.NewFake(t0)
	peer := wl.StartT(t, wl.Options{Clock: clk, TTL: time.Hour})
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "consumer.pid")
	record, _ := startConsumer(t, pidFile)
	cert, key, bundle, jwt := filepath.Join(dir, "svid.pem"), filepath.Join(dir, "svid_key.pem"), filepath.Join(dir, "bundle.pem"), filepath.Join(dir, "jwt.json")
	a := build(t, clk, fmt.Sprintf(`{socket: %q, certFile: %q, keyFile: %q, bundleFile: %q, jwtBundleFile: %q,
		notify: {signal: SIGHUP, process: %q}}`, peer.Addr(), cert, key, bundle, jwt, consumerName()))

	// 1: nothing on disk yet: everything is written, the consumer reloads.
	res, err := a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("run 1: %v (%s)", err, res.Message)
	}
	chain, _ := peer.Current()
	if got := res.Details["changed"].([]string); strings.Join(got, ",") != strings.Join([]string{bundle, key, cert, jwt}, ",") {
		t.Fatalf("changed %v", got)
	}
	if res.Details["serial"] != fmt.Sprintf("%x", chain[0].SerialNumber) || res.Details["notAfter"] != "2025-07-01T10:00:00Z" ||
		res.Details["spiffeID"] != "spiffe://example.org/workload" || !strings.Contains(res.Details["notified"].(string), "SIGHUP") {
		t.Fatalf("details %v", res.Details)
	}
	hups(t, record, 1)
	if mode(t, key) != 0o600 || mode(t, cert) != 0o644 || mode(t, bundle) != 0o644 || mode(t, jwt) != 0o644 {
		t.Fatalf("modes key %v cert %v bundle %v jwt %v", mode(t, key), mode(t, cert), mode(t, bundle), mode(t, jwt))
	}
	svid, err := x509svid.Load(cert, key)
	if err != nil {
		t.Fatalf("written cert/key do not load as an SVID: %v", err)
	}
	if svid.Certificates[0].SerialNumber.Cmp(chain[0].SerialNumber) != 0 || len(svid.Certificates) != 2 {
		t.Fatal("written SVID is not the served one (leaf + intermediate)")
	}
	if !svid.PrivateKey.(*ecdsa.PrivateKey).PublicKey.Equal(svid.Certificates[0].PublicKey) {
		t.Fatal("key does not match cert")
	}
	tb, err := x509bundle.Load(peer.ID().TrustDomain(), bundle)
	if err != nil || !tb.HasX509Authority(peer.Root()) {
		t.Fatalf("bundle file: %v", err)
	}
	var jb map[string]struct {
		Keys []map[string]any `json:"keys"`
	}
	if b, _ := os.ReadFile(jwt); json.Unmarshal(b, &jb) != nil || len(jb["example.org"].Keys) != 1 {
		t.Fatalf("jwt bundle file: %s", b)
	}
	inodes := map[string]uint64{}
	for _, f := range []string{cert, key, bundle, jwt} {
		inodes[f] = ino(t, f)
	}

	// 2: nothing rotated: no file is rewritten, nobody is signalled.
	if _, err := peer.AddJWTAuthority(); err != nil { // ...except the JWT bundle, which did change
		t.Fatal(err)
	}
	if _, err := peer.AddJWTAuthority(); err != nil {
		t.Fatal(err)
	}
	res, err = a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("run 2: %v", err)
	}
	if got := res.Details["changed"].([]string); len(got) != 1 || got[0] != jwt {
		t.Fatalf("run 2 changed %v, want only the JWT bundle", got)
	}
	hups(t, record, 2)
	inodes[jwt] = ino(t, jwt)
	res, err = a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("run 3: %v", err)
	}
	if got := res.Details["changed"].([]string); len(got) != 0 || res.Details["notified"] != nil {
		t.Fatalf("run 3 (unchanged) changed %v notified %v", got, res.Details["notified"])
	}
	for f, i := range inodes {
		if ino(t, f) != i {
			t.Fatalf("%s was rewritten although unchanged", f)
		}
	}

	// 4: the SVID rotates: cert and key are replaced by rename (new
	// inodes), the bundle is left alone, the consumer reloads again.
	clk.Advance(10 * time.Minute)
	if _, err := peer.Rotate(); err != nil {
		t.Fatal(err)
	}
	res, err = a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("run 4: %v", err)
	}
	if got := res.Details["changed"].([]string); strings.Join(got, ",") != key+","+cert {
		t.Fatalf("run 4 changed %v", got)
	}
	hups(t, record, 3)
	if ino(t, cert) == inodes[cert] || ino(t, key) == inodes[key] || ino(t, bundle) != inodes[bundle] {
		t.Fatal("cert/key not replaced by rename, or bundle rewritten")
	}
	if mode(t, key) != 0o600 {
		t.Fatalf("key mode after rotation %v", mode(t, key))
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".medic-") {
			t.Fatalf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestNotifyFailureIsRetriedEvenIfUnchanged(t *testing.T) {
	clk := clock.NewFake(t0)
	peer := wl.StartT(t, wl.Options{Clock: clk})
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "consumer.pid")
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	a := build(t, clk, fmt.Sprintf(`{socket: %q, certFile: %q, keyFile: %q, notify: {pidFile: %q}}`, peer.Addr(), cert, key, pidFile))

	// The consumer is not running yet: files are written, notify fails (retryable).
	res, err := a.Run(context.Background(), inc)
	if err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "consumer not running") {
		t.Fatalf("run 1: %v", err)
	}
	if len(res.Details["changed"].([]string)) != 2 {
		t.Fatalf("changed %v", res.Details["changed"])
	}
	record, _ := startConsumer(t, pidFile)
	// Nothing changed since, but the consumer never got the news.
	res, err = a.Run(context.Background(), inc)
	if err != nil {
		t.Fatalf("run 2: %v", err)
	}
	if len(res.Details["changed"].([]string)) != 0 || !strings.Contains(res.Details["notified"].(string), "SIGHUP") {
		t.Fatalf("run 2 details %v", res.Details)
	}
	hups(t, record, 1)
	if _, err := a.Run(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	hups(t, record, 1) // now settled: no further signal
}

func TestNotifyExecAndAlways(t *testing.T) {
	clk := clock.NewFake(t0)
	peer := wl.StartT(t, wl.Options{Clock: clk})
	dir := t.TempDir()
	out := filepath.Join(dir, "reloaded")
	a := build(t, clk, fmt.Sprintf(`{socket: %q, certFile: %q, keyFile: %q,
		notify: {exec: [/bin/sh, -c, 'echo "$MEDIC_ALERT" >> %s'], always: true}}`, peer.Addr(), filepath.Join(dir, "c"), filepath.Join(dir, "k"), out))
	for i := 0; i < 2; i++ {
		res, err := a.Run(context.Background(), inc)
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if !strings.Contains(res.Details["notified"].(string), "exec /bin/sh (exit 0)") {
			t.Fatalf("notified %v", res.Details["notified"])
		}
	}
	if b, _ := os.ReadFile(out); string(b) != "SVIDRotationOverdue\nSVIDRotationOverdue\n" {
		t.Fatalf("notify exec ran with %q", b)
	}
}

func TestCommandVariant(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "renewed")
	a := build(t, clock.NewFake(t0), fmt.Sprintf(`{command: [/bin/sh, -c, 'echo renewed > %s; echo done'], timeout: 5s}`, out))
	res, err := a.Run(context.Background(), inc)
	if err != nil || res.Message != "exit 0" || !strings.Contains(res.Output, "done") {
		t.Fatalf("%+v %v", res, err)
	}
	if b, _ := os.ReadFile(out); string(b) != "renewed\n" {
		t.Fatalf("command did not run: %q", b)
	}
	a = build(t, clock.NewFake(t0), `{command: [/bin/sh, -c, 'exit 4']}`)
	if _, err := a.Run(context.Background(), inc); err == nil || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("failing command: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	clk := clock.NewFake(t0)
	peer := wl.StartT(t, wl.Options{Clock: clk, TTL: time.Hour})
	dir := t.TempDir()

	// A symlink where the cert goes is not replaced.
	target := filepath.Join(dir, "elsewhere.pem")
	_ = os.WriteFile(target, []byte("keep me"), 0o644)
	link := filepath.Join(dir, "cert.pem")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	a := build(t, clk, fmt.Sprintf(`{socket: %q, certFile: %q, keyFile: %q}`, peer.Addr(), link, filepath.Join(dir, "k.pem")))
	_, err := a.Run(context.Background(), inc)
	if !actions.IsPermanent(err) || !errors.Is(err, ErrNotRegular) {
		t.Fatalf("symlink: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Fatal("symlink target overwritten")
	}

	// An SVID that has already expired (by the action's clock) is not written.
	cert := filepath.Join(dir, "c.pem")
	late := clock.NewFake(t0.Add(2 * time.Hour))
	peer.StopRotating()
	a = build(t, late, fmt.Sprintf(`{socket: %q, certFile: %q, keyFile: %q}`, peer.Addr(), cert, filepath.Join(dir, "k2.pem")))
	if _, err := a.Run(context.Background(), inc); err == nil || !strings.Contains(err.Error(), "refusing to write SVID") {
		t.Fatalf("expired SVID: %v", err)
	}
	if _, err := os.Stat(cert); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("expired SVID written")
	}

	// The agent refuses (no entry) or is not there: retryable, nothing written.
	peer.Deny(true)
	a = build(t, clk, fmt.Sprintf(`{socket: %q, certFile: %q, keyFile: %q}`, peer.Addr(), cert, filepath.Join(dir, "k3.pem")))
	if _, err := a.Run(context.Background(), inc); err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("denied: %v", err)
	}
	a = build(t, clk, fmt.Sprintf(`{socket: "unix://%s/none.sock", timeout: 2s, certFile: %q, keyFile: %q}`, dir, cert, filepath.Join(dir, "k3.pem")))
	if _, err := a.Run(context.Background(), inc); err == nil || actions.IsPermanent(err) || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("no agent: %v", err)
	}
	if _, err := os.Stat(cert); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("file written without a valid answer")
	}
}

func TestConfigValidation(t *testing.T) {
	c, err := decode(t, `{socket: unix:///run/spire/sockets/agent.sock, certFile: /c.pem, keyFile: /k.pem, notify: {process: nginx}}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Notify.Signal != "SIGHUP" || c.Notify.ProcRoot != "/proc" || c.Notify.Timeout.D() != 30*time.Second || c.KeyFileMode != "0600" {
		t.Fatalf("defaults: %+v %+v", c, c.Notify)
	}
	_, err = decode(t, `{socket: /run/agent.sock, command: [x], certFile: /c.pem, keyFile: /c.pem, keyFileMode: "0644",
		notify: {process: nginx, pidFile: /p, signal: SIGWHAT, bogus: 1}}`)
	if err == nil || !strings.Contains(err.Error(), "actions.refresh.certRefresh.notify.bogus: unknown field") {
		t.Fatalf("unknown key in notify: %v", err)
	}
	_, err = decode(t, `{socket: /run/agent.sock, command: [x], certFile: /c.pem, keyFile: /c.pem, keyFileMode: "0644",
		notify: {process: nginx, pidFile: /p, signal: SIGWHAT}}`)
	for _, want := range []string{
		"actions.refresh.certRefresh: set socket or command, not both",
		`actions.refresh.certRefresh.socket: workload endpoint socket URI must have a "tcp" or "unix" scheme`,
		"actions.refresh.certRefresh.keyFile: is the same file as certFile",
		"actions.refresh.certRefresh.certFile: is only used with socket",
		`actions.refresh.certRefresh.keyFileMode: 0644 gives other users access to the private key`,
		"actions.refresh.certRefresh.notify: set exactly one of process, cmdline or pidFile (2 set)",
		`actions.refresh.certRefresh.notify.signal: unknown signal "SIGWHAT"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\ndoes not contain %q", err, want)
		}
	}
	if _, err := decode(t, `{}`); err == nil || !strings.Contains(err.Error(), "set socket (SPIFFE Workload API) or command") {
		t.Errorf("empty: %v", err)
	}
	if _, err := decode(t, `{socket: "unix:///a.sock"}`); err == nil || !strings.Contains(err.Error(), "certFile: is required") {
		t.Errorf("no files: %v", err)
	}
}

// Each check of the split Validate (the command way, the write settings,
// notify) reports with its path.
func TestConfigValidationEachCheck(t *testing.T) {
	const sock = `socket: "unix:///a.sock", certFile: /c.pem, keyFile: /k.pem`
	for doc, want := range map[string]string{
		`{command: [""]}`:                                      "certRefresh.command: must name a program",
		`{` + sock + `, timeout: 0s}`:                          "certRefresh.timeout: must be greater than 0",
		`{` + sock + `, certFileMode: "rw"}`:                   "certRefresh.certFileMode: ",
		`{` + sock + `, keyFileMode: "9"}`:                     "certRefresh.keyFileMode: ",
		`{` + sock + `, notify: {signal: SIGHUP}}`:             "certRefresh.notify: set one of process, cmdline or pidFile (with signal), or exec",
		`{` + sock + `, notify: {process: a, exec: [b]}}`:      "certRefresh.notify: set a process to signal or exec, not both",
		`{` + sock + `, notify: {process: /usr/bin/a}}`:        `certRefresh.notify.process: is the executable's base name, not a path: "/usr/bin/a"`,
		`{` + sock + `, notify: {cmdline: "a("}}`:              "certRefresh.notify.cmdline: invalid regular expression",
		`{` + sock + `, notify: {exec: [""]}}`:                 "certRefresh.notify.exec: must name a program",
		`{` + sock + `, notify: {process: a, scope: node}}`:    `certRefresh.notify.scope: must be pod or any (or unset: pod when medic is in a pod), not "node"`,
		`{` + sock + `, notify: {socket: /x}}`:                 "certRefresh.notify.socket: unknown field",
		`{command: [x], spiffeID: "spiffe://example.org/a"}`:   "certRefresh.spiffeID: is only used with socket",
		`{socket: "unix:///a.sock", certFile: /c.pem}`:         "certRefresh.keyFile: is required with socket",
		`{` + sock + `, bundleFile: /c.pem}`:                   "certRefresh.bundleFile: is the same file as certFile",
		`{` + sock + `, notify: {exec: [b], scope: pod}}`:      "certRefresh.notify.scope: applies to a signal, not to exec",
		`{` + sock + `, notify: {pidFile: /p, signal: SIGNO}}`: `certRefresh.notify.signal: unknown signal "SIGNO"`,
	} {
		if _, err := decode(t, doc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v\ndoes not contain %q", doc, err, want)
		}
	}
	if _, err := decode(t, `{command: [x], notify: {exec: [y]}}`); err != nil {
		t.Errorf("command with an exec notify: %v", err)
	}
}
