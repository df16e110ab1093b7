package plugins

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/medic-sidecar/medic/plugins/sdk"
)

// ErrChecksum is wrapped by every error about a binary whose sha256 does
// not match its configuration.
var ErrChecksum = errors.New("sha256 mismatch")

// process is one running plugin process.
type process struct {
	client *plugin.Client
	rpc    *sdk.Client
	info   sdk.Info
	pid    int
	exited <-chan struct{} // closed once the process has exited and been reaped
	start  time.Time       // wall-clock start, for /status

	mu         sync.Mutex
	stopping   bool   // medic asked it to stop: its exit is not a crash
	killReason string // why medic killed it (hung, unreachable): its exit is a crash
}

// launchOptions is what starting a process needs from the host.
type launchOptions struct {
	name         string
	path         string
	args         []string
	env          map[string]string
	checksum     []byte // nil: do not verify (medic plugin info)
	startTimeout time.Duration
	logger       *hcLogger
	stdout       io.Writer
	stderr       io.Writer
}

// launch starts the binary through go-plugin (sha256 checked by
// SecureConfig, AutoMTLS, gRPC only), completes the handshake and asks
// the plugin for its Info.
func launch(o launchOptions) (*process, error) {
	cmd := exec.Command(o.path, o.args...)
	// medic builds the environment itself (SkipHostEnv) so that env from
	// config wins over medic's own variables of the same name.
	cmd.Env = append(os.Environ(), "MEDIC_PLUGIN_NAME="+o.name)
	for _, k := range slices.Sorted(maps.Keys(o.env)) {
		cmd.Env = append(cmd.Env, k+"="+o.env[k])
	}
	// Own process group, so the plugin's children are stopped with it;
	// SIGKILL if medic dies, so a plugin never outlives medic.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	cc := &plugin.ClientConfig{
		HandshakeConfig: sdk.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			sdk.ProtocolVersion: {sdk.PluginName: &sdk.GRPCPlugin{}},
		},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     o.startTimeout,
		Logger:           o.logger,
		SyncStdout:       o.stdout,
		SyncStderr:       o.stderr,
		SkipHostEnv:      true,
	}
	if o.checksum != nil {
		cc.SecureConfig = &plugin.SecureConfig{Checksum: o.checksum, Hash: sha256.New()}
	}
	client := plugin.NewClient(cc)
	started := time.Now()
	rpcClient, err := client.Client()
	if err != nil {
		client.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, checksumError(o.path, o.checksum)
		}
		return nil, fmt.Errorf("start %s: %w", o.path, err)
	}
	p := &process{client: client, start: started}
	if rc := client.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	raw, err := rpcClient.Dispense(sdk.PluginName)
	if err != nil {
		p.hardKill()
		client.Kill()
		return nil, fmt.Errorf("start %s: dispense: %w", o.path, err)
	}
	p.rpc = raw.(*sdk.Client)
	p.exited = p.rpc.Done()
	ctx, cancel := context.WithTimeout(context.Background(), o.startTimeout)
	defer cancel()
	p.info, err = p.rpc.Info(ctx)
	if err == nil && p.info.ProtocolVersion != sdk.ProtocolVersion {
		err = fmt.Errorf("plugin speaks protocol version %d, medic speaks %d: rebuild it with medic's plugins/sdk", p.info.ProtocolVersion, sdk.ProtocolVersion)
	}
	if err != nil {
		p.hardKill()
		client.Kill()
		return nil, fmt.Errorf("start %s: Info: %w", o.path, err)
	}
	return p, nil
}

// checksumError says what the binary's sha256 is and what config expects.
func checksumError(path string, want []byte) error {
	got, err := fileSHA256(path)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrChecksum, path, err)
	}
	return fmt.Errorf("%w: %s has sha256 %s but config says %s: refusing to run it "+
		"(if you trust this binary, run 'medic plugin info %s' and update the config)",
		ErrChecksum, path, got, hex.EncodeToString(want), path)
}

// fileSHA256 returns the hex sha256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// markStopping records that medic is stopping the process on purpose.
func (p *process) markStopping() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
}

// exitReason returns whether the exit was requested and, for a kill by
// medic, why.
func (p *process) exitReason() (requested bool, killReason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping, p.killReason
}

// kill SIGKILLs the whole process group at once (a hung or unreachable
// plugin); the exit is then handled as a crash with reason.
func (p *process) kill(reason string) {
	p.mu.Lock()
	if p.killReason == "" && !p.stopping {
		p.killReason = reason
	}
	p.mu.Unlock()
	p.hardKill()
}

func (p *process) hardKill() {
	if p.pid > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
}

// stopGrace bounds a graceful stop before the process group is killed.
const stopGrace = 3 * time.Second

// stop shuts the process down: go-plugin's graceful Shutdown (then its
// own SIGKILL), then SIGKILL to whatever is left of the process group, so
// no child of the plugin survives it. It returns once the process is reaped.
func (p *process) stop() {
	p.markStopping()
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.client.Kill()
	}()
	// go-plugin reaps the plugin only after its stdout/stderr close, which
	// a child holding them open would prevent: wait for the leader to
	// exit (a zombie counts), then kill the group.
	waitExit(p.pid, stopGrace)
	p.hardKill()
	<-done
	waitGroupGone(p.pid, groupGrace)
}

// groupGrace bounds the wait for a SIGKILLed process group to die.
const groupGrace = 2 * time.Second

// waitGroupGone polls /proc until no live (non-zombie) process is left in
// process group pgid, or d passes. SIGKILL is asynchronous; this makes
// "stopped" mean "gone".
func waitGroupGone(pgid int, d time.Duration) {
	if pgid <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// groupAlive reports whether a live process in group pgid exists.
func groupAlive(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			continue
		}
		f := strings.Fields(s[i+2:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			return true
		}
	}
	return false
}

// waitExit polls /proc until pid has exited (gone or a zombie) or d passes.
func waitExit(pid int, d time.Duration) {
	if pid <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may contain spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}
