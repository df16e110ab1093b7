package sdk

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"
)

// stderr is the process's real stderr, kept before Serve redirects
// os.Stderr into the plugin's stdio stream. Lines written here in hclog's
// JSON form are parsed by medic and logged with their level and fields.
var stderr = os.Stderr

// hclogTime is the timestamp layout go-plugin's host parses.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

// Logger returns a logger whose records appear in medic's log, with the
// plugin's name, at their own level. Anything else the plugin prints to
// stdout or stderr is logged by medic line by line.
func Logger() *slog.Logger { return logger }

var logger = newLogger(stderr)

func newLogger(w io.Writer) *slog.Logger { return slog.New(newHCLogHandler(w, slog.LevelDebug)) }

// newHCLogHandler writes slog records as hclog JSON lines
// ({"@level":"info","@message":…,"@timestamp":…, key: value…}).
func newHCLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTime))
			case slog.LevelKey:
				return slog.String("@level", hclogLevel(a.Value.Any().(slog.Level)))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
}

func hclogLevel(l slog.Level) string {
	switch {
	case l < slog.LevelDebug:
		return "trace"
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	}
	return "error"
}

// withDeadline bounds ctx by the attempt deadline sent by medic.
func withDeadline(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline)
}
