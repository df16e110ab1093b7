package plugins

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})).With("plugin", "hook")
	var l hclog.Logger = newHCLogger(base)
	if l.GetLevel() != hclog.Info || l.IsDebug() || !l.IsInfo() {
		t.Fatalf("level %v", l.GetLevel())
	}
	l.Named("webhook").With("k", "v").Warn("slow", "plugin", "/opt/p/webhook", "timestamp", "x", "n", 3, "odd")
	l.Debug("dropped")
	l.StandardWriter(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Write([]byte("line one\nline two\n"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines:\n%s", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"level": "WARN", "msg": "slow", "plugin": "hook", "k": "v", "binary": "/opt/p/webhook",
		"n": 3.0, "extra": "odd", "logger": "webhook"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (%s)", k, m[k], v, lines[0])
		}
	}
	if _, ok := m["timestamp"]; ok {
		t.Error("the plugin's timestamp was kept")
	}
	if !strings.Contains(lines[1], `"level":"ERROR","msg":"line one"`) || !strings.Contains(lines[2], `"msg":"line two"`) {
		t.Errorf("standard writer lines: %s / %s", lines[1], lines[2])
	}
}

func TestLineWriterSplitsAndBounds(t *testing.T) {
	var got []string
	w := &lineWriter{emit: func(s string) { got = append(got, s) }}
	w.Write([]byte("a\r\nb"))
	w.Write([]byte("c\n\n"))
	w.Write(bytes.Repeat([]byte("x"), maxLine+10))
	if len(got) != 3 || got[0] != "a" || got[1] != "bc" || len(got[2]) != maxLine {
		t.Fatalf("got %q", got)
	}
}
