package main

import (
	"context"
	"io"
	"log/slog"
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
	grpcLogOnce.Do(func() {
		l = l.With("component", "grpc")
		grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, slogWriter{l, slog.LevelWarn}, slogWriter{l, slog.LevelError}))
	})
}

var grpcLogOnce sync.Once

type slogWriter struct {
	l     *slog.Logger
	level slog.Level
}

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	// grpclog prefixes its own "WARNING: 2026/11/22 06:00:00 " header.
	if i := strings.Index(msg, "] "); i >= 0 && i < 60 && strings.Contains(msg[:i], "[") {
		msg = msg[i+2:]
	}
	w.l.Log(context.Background(), w.level, msg)
	return len(p), nil
}
