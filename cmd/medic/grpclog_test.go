package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/grpclog"
)

func jsonLines(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		out = append(out, m)
	}
	return out
}

func TestGRPCLogLinesBecomeStructuredRecords(t *testing.T) {
	var buf bytes.Buffer
	var lg grpclog.LoggerV2 = newGRPCLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	lg.Errorf("[transport] Client received GoAway with error code ENHANCE_YOUR_CALM and debug data equal to ASCII %q.", "too_many_pings")
	out := buf.String()
	if !strings.Contains(out, `"level":"ERROR"`) || !strings.Contains(out, `Client received GoAway`) || strings.Count(out, "\n") != 1 {
		t.Fatalf("record %s", out)
	}
}

// grpc-go's pick-first balancer logs "Got unexpected health update for
// SubConn %p: %v" with a single argument: through grpclog's real
// formatting that is "%!p(balancer.SubConnState=…): %!v(MISSING)", and it
// came back with every reconnect. The line is repaired, and repeats of it
// are not logged again until something else is.
func TestGRPCMisformattedLineIsRepairedAndLoggedOncePerChange(t *testing.T) {
	var buf bytes.Buffer
	var lg grpclog.LoggerV2 = newGRPCLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	format := "[pick-first-leaf-lb %p] Got unexpected health update for SubConn %p: %v"
	// grpc's PrefixLogger formats, then calls Error with the text.
	for i := range 5 {
		lg.Error(fmt.Sprintf(format, &struct{ n int }{i}, balancer.SubConnState{ConnectivityState: connectivity.Idle}))
	}
	lg.Warningf("[core] [Channel #1]Channel switches to new LB policy %q", "pick_first")
	lg.Errorf(format, &struct{ n int }{9}, balancer.SubConnState{ConnectivityState: connectivity.Idle})

	lines := jsonLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (one per change), got %d:\n%s", len(lines), buf.String())
	}
	msg := lines[0]["msg"].(string)
	if strings.Contains(msg, "%!") || !strings.Contains(msg, "Got unexpected health update") || !strings.Contains(msg, "SubConnState=") {
		t.Fatalf("line not repaired: %q", msg)
	}
	if lines[1]["previousLineRepeated"] != float64(4) || lines[1]["level"] != "WARN" {
		t.Fatalf("second line %v", lines[1])
	}
}
