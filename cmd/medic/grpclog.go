package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"

	"google.golang.org/grpc/grpclog"
)

// routeGRPCLogs sends grpc-go's own warnings and errors (e.g. a server's
// too_many_pings GOAWAY) into medic's structured log instead of stderr.
// grpc-go's info chatter is dropped. grpclog's logger is a process-wide
// variable that must be set before gRPC is used, so only the first call
// (the first `medic run` in this process) sets it.
func routeGRPCLogs(l *slog.Logger) {
	grpcLogOnce.Do(func() { grpclog.SetLoggerV2(newGRPCLog(l.With("component", "grpc"))) })
}

var grpcLogOnce sync.Once

// grpcLog is a grpclog.LoggerV2 writing slog records: one record per
// call, at its own level (grpclog's writer-based logger would copy every
// error to the warning stream too), with grpc-go's format repaired where
// its verbs do not fit their arguments. A line that merely repeats the
// previous one (pointer values aside: grpc names its subchannels by
// address) is not logged again; the next different line says how many
// repeats were left out. So a failure grpc reports on every reconnect is
// one line per change, not one every 30 s.
type grpcLog struct {
	l *slog.Logger

	mu       sync.Mutex
	lastKey  string
	repeated int
}

var _ grpclog.LoggerV2 = (*grpcLog)(nil)

func newGRPCLog(l *slog.Logger) *grpcLog { return &grpcLog{l: l} }

func (g *grpcLog) Info(...any)               {}
func (g *grpcLog) Infoln(...any)             {}
func (g *grpcLog) Infof(string, ...any)      {}
func (g *grpcLog) V(int) bool                { return false }
func (g *grpcLog) Warning(args ...any)       { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g *grpcLog) Warningln(args ...any)     { g.log(slog.LevelWarn, fmt.Sprintln(args...)) }
func (g *grpcLog) Error(args ...any)         { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g *grpcLog) Errorln(args ...any)       { g.log(slog.LevelError, fmt.Sprintln(args...)) }
func (g *grpcLog) Fatal(args ...any)         { g.fatal(fmt.Sprint(args...)) }
func (g *grpcLog) Fatalln(args ...any)       { g.fatal(fmt.Sprintln(args...)) }
func (g *grpcLog) Fatalf(f string, a ...any) { g.fatal(fmt.Sprintf(f, a...)) }
func (g *grpcLog) Warningf(f string, a ...any) {
	g.log(slog.LevelWarn, fmt.Sprintf(f, a...))
}
func (g *grpcLog) Errorf(f string, a ...any) {
	g.log(slog.LevelError, fmt.Sprintf(f, a...))
}

// fatal is grpclog's contract for Fatal: log, then exit.
func (g *grpcLog) fatal(msg string) {
	g.l.Error(cleanVerbs(strings.TrimSpace(msg)))
	os.Exit(1)
}

func (g *grpcLog) log(level slog.Level, msg string) {
	msg = cleanVerbs(strings.TrimSpace(msg))
	key := level.String() + " " + pointerRe.ReplaceAllString(msg, "0x…")
	g.mu.Lock()
	if key == g.lastKey {
		g.repeated++
		g.mu.Unlock()
		return
	}
	repeated := g.repeated
	g.lastKey, g.repeated = key, 0
	g.mu.Unlock()
	var attrs []slog.Attr
	if repeated > 0 {
		attrs = append(attrs, slog.Int("previousLineRepeated", repeated))
	}
	g.l.LogAttrs(context.Background(), level, msg, attrs...)
}

var pointerRe = regexp.MustCompile(`0x[0-9a-f]{6,}`)

// cleanVerbs repairs what fmt writes for a verb that does not fit its
// argument, as grpc-go's own format strings sometimes have
// ("SubConn %p: %v" with one argument): "%!p(T=v)" becomes "T=v",
// "%!v(MISSING)" and "%!(EXTRA " markers go.
func cleanVerbs(s string) string {
	if !strings.Contains(s, "%!") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "%!")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i+2:]
		// An optional verb letter, then the parenthesised argument.
		j := 0
		if j < len(s) && s[j] != '(' {
			j++
		}
		if j >= len(s) || s[j] != '(' {
			b.WriteString("%!")
			continue
		}
		end, depth := -1, 0
		for k := j; k < len(s); k++ {
			switch s[k] {
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				end = k
				break
			}
		}
		if end < 0 {
			b.WriteString(s)
			break
		}
		inner := s[j+1 : end]
		inner = strings.TrimPrefix(inner, "EXTRA ")
		if inner != "MISSING" && inner != "NOVERB" && inner != "BADINDEX" {
			b.WriteString(inner)
		}
		s = s[end+1:]
	}
	return strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(b.String()), ":"))
}
