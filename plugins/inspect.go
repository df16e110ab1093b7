package plugins

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/medic-sidecar/medic/plugins/sdk"
)

// Inspection is what `medic plugin info` reports about a binary.
type Inspection struct {
	Path   string   `json:"path"`
	SHA256 string   `json:"sha256"`
	Info   sdk.Info `json:"info"`
	// Startup is how long the start and handshake took.
	Startup time.Duration `json:"-"`
	// StartupSeconds is Startup for JSON.
	StartupSeconds float64 `json:"startupSeconds"`
}

// Inspect starts the plugin binary at path once (verified against the
// checksum computed here, so the binary that runs is the one hashed),
// asks for its Info and stops it. logger receives its logs.
func Inspect(ctx context.Context, path string, startTimeout time.Duration, logger *slog.Logger) (Inspection, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Inspection{}, err
	}
	sum, err := fileSHA256(abs)
	if err != nil {
		return Inspection{}, fmt.Errorf("read plugin: %w", err)
	}
	want, _ := hex.DecodeString(sum)
	type result struct {
		p   *process
		err error
	}
	ch := make(chan result, 1)
	go func() {
		p, err := launch(launchOptions{
			name: filepath.Base(abs), path: abs, checksum: want, startTimeout: startTimeout,
			logger: newHCLogger(logger), stdout: outputLogger(logger, "stdout"), stderr: outputLogger(logger, "stderr"),
		})
		ch <- result{p, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		r = <-ch // launch is bounded by startTimeout
		if r.p != nil {
			r.p.stop()
		}
		return Inspection{}, ctx.Err()
	}
	if r.err != nil {
		return Inspection{}, r.err
	}
	defer r.p.stop()
	d := time.Since(r.p.start)
	return Inspection{Path: abs, SHA256: sum, Info: r.p.info, Startup: d, StartupSeconds: d.Seconds()}, nil
}
