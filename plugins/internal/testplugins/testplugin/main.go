// Command testplugin is a remediation plugin whose behaviour tests choose
// per call through its config {"mode": …}: succeed, retryable, permanent,
// crash (os.Exit mid-call), hang (ignores its deadline), honour (waits
// for its deadline and returns), panic, spawn (starts a child process
// that would outlive it and holds its stderr open), log (writes to every
// log channel), crashonce (crashes the first time, then succeeds).
// TESTPLUGIN_START=crash makes the process exit before its handshake.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/medic-sidecar/medic/plugins/sdk"
)

type config struct {
	Mode     string `json:"mode"`
	ExitCode int    `json:"exitCode"`
	// Marker is crashonce's file: absent, the call creates it and crashes.
	Marker string `json:"marker"`
}

var modes = map[string]bool{"succeed": true, "retryable": true, "permanent": true, "crash": true,
	"hang": true, "honour": true, "panic": true, "spawn": true, "log": true, "crashonce": true}

type testPlugin struct{}

func (testPlugin) Info() sdk.Info {
	return sdk.Info{
		Name:         "testplugin",
		Version:      envOr("TESTPLUGIN_VERSION", "0.0.1"),
		Description:  "medic's test plugin",
		ConfigSchema: json.RawMessage(`{"type":"object","properties":{"mode":{"type":"string"}},"required":["mode"]}`),
	}
}

func (testPlugin) Validate(_ context.Context, raw json.RawMessage) error {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	var errs []error
	if !modes[c.Mode] {
		errs = append(errs, sdk.Errorf("mode", "unknown mode %q", c.Mode))
	}
	if c.ExitCode < 0 {
		errs = append(errs, sdk.Errorf("exitCode", "must not be negative"))
	}
	return errors.Join(errs...)
}

func (testPlugin) Remediate(ctx context.Context, inc sdk.Incident, raw json.RawMessage) (sdk.Result, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return sdk.Result{}, sdk.Permanent(err)
	}
	d, _ := ctx.Deadline()
	details := map[string]any{"pid": os.Getpid(), "incident": inc, "deadline": d, "echo": os.Getenv("TESTPLUGIN_ECHO"),
		"mtls": os.Getenv("PLUGIN_CLIENT_CERT") != ""}
	switch c.Mode {
	case "succeed":
		return sdk.Result{Message: "ok " + inc.ID, Output: "did it", Details: details}, nil
	case "retryable":
		return sdk.Result{Details: details}, errors.New("upstream said 503")
	case "permanent":
		return sdk.Result{Details: details}, sdk.Permanent(errors.New("credentials rejected"))
	case "crash":
		sdk.Logger().Error("about to crash", "incident", inc.ID)
		os.Exit(max(c.ExitCode, 3))
	case "crashonce":
		if _, err := os.Stat(c.Marker); err != nil {
			if err := os.WriteFile(c.Marker, nil, 0o600); err != nil {
				return sdk.Result{}, err
			}
			os.Exit(3)
		}
		return sdk.Result{Message: "ok after a crash", Details: details}, nil
	case "hang":
		select {}
	case "honour":
		<-ctx.Done()
		return sdk.Result{Details: details}, fmt.Errorf("gave up: %w", ctx.Err())
	case "panic":
		panic("testplugin panics on purpose")
	case "spawn":
		cmd := exec.Command("sleep", "300")
		// The child holds the plugin's real stderr (fd 2, the pipe to
		// medic) open, as a careless plugin's child would.
		cmd.Stderr = os.NewFile(2, "stderr")
		if err := cmd.Start(); err != nil {
			return sdk.Result{}, err
		}
		details["childPid"] = cmd.Process.Pid
		return sdk.Result{Message: "spawned " + strconv.Itoa(cmd.Process.Pid), Details: details}, nil
	case "log":
		sdk.Logger().Warn("structured warning", "incident", inc.ID, "attempt", inc.Attempt)
		fmt.Fprintln(os.Stderr, "plain stderr line")
		fmt.Println("plain stdout line")
		return sdk.Result{Message: "logged", Details: details}, nil
	}
	return sdk.Result{}, sdk.Permanent(fmt.Errorf("unknown mode %q", c.Mode))
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	switch os.Getenv("TESTPLUGIN_START") {
	case "crash":
		fmt.Fprintln(os.Stderr, "testplugin: crashing before the handshake")
		os.Exit(4)
	case "slow":
		time.Sleep(time.Minute)
	}
	sdk.Serve(testPlugin{})
}
