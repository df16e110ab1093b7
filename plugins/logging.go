package plugins

import (
	"bytes"
	"context"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// hcLogger adapts medic's slog logger to the hclog.Logger go-plugin
// wants. go-plugin logs its own events through it and re-logs every
// hclog JSON line the plugin writes to stderr at that line's level, so
// plugin logs land in medic's log with the plugin's name.
type hcLogger struct {
	l    *slog.Logger
	name string
	args []any
}

var _ hclog.Logger = (*hcLogger)(nil)

func newHCLogger(l *slog.Logger) *hcLogger { return &hcLogger{l: l} }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Log logs msg at level. go-plugin adds the plugin line's own timestamp;
// it is dropped (medic's record has its own). go-plugin's "plugin" key
// (the binary's path) becomes "binary".
func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	lvl := slogLevel(level)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	out := make([]any, 0, len(args)+2)
	for i := 0; i < len(args); i += 2 {
		if i+1 < len(args) {
			k, _ := args[i].(string)
			switch k {
			case "timestamp":
				continue
			case "plugin":
				// go-plugin's "plugin" is the binary's path; medic's
				// "plugin" attribute is the configured name.
				out = append(out, "binary", args[i+1])
				continue
			}
			out = append(out, args[i], args[i+1])
			continue
		}
		out = append(out, "extra", args[i])
	}
	if h.name != "" {
		out = append(out, "logger", h.name)
	}
	h.l.Log(ctx, lvl, msg, out...)
}

// Trace logs at slog's debug-4.
func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }

// Debug logs at debug.
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }

// Info logs at info.
func (h *hcLogger) Info(msg string, args ...any) { h.Log(hclog.Info, msg, args...) }

// Warn logs at warn.
func (h *hcLogger) Warn(msg string, args ...any) { h.Log(hclog.Warn, msg, args...) }

// Error logs at error.
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) enabled(l hclog.Level) bool {
	return h.l.Enabled(context.Background(), slogLevel(l))
}

// IsTrace reports whether trace records are kept.
func (h *hcLogger) IsTrace() bool { return h.enabled(hclog.Trace) }

// IsDebug reports whether debug records are kept.
func (h *hcLogger) IsDebug() bool { return h.enabled(hclog.Debug) }

// IsInfo reports whether info records are kept.
func (h *hcLogger) IsInfo() bool { return h.enabled(hclog.Info) }

// IsWarn reports whether warnings are kept.
func (h *hcLogger) IsWarn() bool { return h.enabled(hclog.Warn) }

// IsError reports whether errors are kept.
func (h *hcLogger) IsError() bool { return h.enabled(hclog.Error) }

// ImpliedArgs returns the arguments added by With.
func (h *hcLogger) ImpliedArgs() []any { return h.args }

// With returns a logger that adds args to every record.
func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.l = h.l.With(args...)
	c.args = append(append([]any(nil), h.args...), args...)
	return &c
}

// Name returns the logger's name.
func (h *hcLogger) Name() string { return h.name }

// Named returns a logger whose name has name appended.
func (h *hcLogger) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

// ResetNamed returns a logger named name.
func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel does nothing: medic's slog handler decides.
func (h *hcLogger) SetLevel(hclog.Level) {}

// GetLevel returns the lowest level medic's handler keeps.
func (h *hcLogger) GetLevel() hclog.Level {
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if h.enabled(l) {
			return l
		}
	}
	return hclog.Off
}

// StandardLogger returns a *log.Logger writing into this logger.
func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter returns a writer that logs each line at info (or opts.ForceLevel).
func (h *hcLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	lvl := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		lvl = opts.ForceLevel
	}
	return &lineWriter{emit: func(line string) { h.Log(lvl, line) }}
}

// maxLine bounds a buffered output line.
const maxLine = 64 << 10

// lineWriter calls emit for every complete line written to it; a line
// longer than maxLine is emitted in pieces.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(line string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) >= maxLine {
				w.emit(string(w.buf[:maxLine]))
				w.buf = append(w.buf[:0], w.buf[maxLine:]...)
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		if line := strings.TrimRight(string(w.buf), "\r"); line != "" {
			w.emit(line)
		}
		w.buf = w.buf[:0]
	}
	return n, nil
}

// outputLogger logs what the plugin prints to stdout or stderr (after
// sdk.Serve, go-plugin streams them to the host) line by line.
func outputLogger(l *slog.Logger, stream string) io.Writer {
	return &lineWriter{emit: func(line string) { l.Info(line, "stream", stream) }}
}
