package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestGRPCLogLinesBecomeStructuredRecords(t *testing.T) {
	var buf bytes.Buffer
	w := slogWriter{slog.New(slog.NewJSONHandler(&buf, nil)), slog.LevelError}
	w.Write([]byte("ERROR: 2026/11/22 06:00:00 [transport] Client received GoAway with error code ENHANCE_YOUR_CALM and debug data equal to ASCII \"too_many_pings\".\n"))
	out := buf.String()
	if !strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, `"msg":"Client received GoAway`) {
		t.Fatalf("record %s", out)
	}
}
