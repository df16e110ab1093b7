package remedy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/clock"
)

// auditLines reads audit.jsonl; every line must be a JSON object.
func auditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %q is not JSON: %v\n%s", sc.Text(), err, b)
		}
		out = append(out, m)
	}
	return out
}

func findAudit(lines []map[string]any, typ, reason string) map[string]any {
	for _, l := range lines {
		if l["type"] == typ && (reason == "" || l["reason"] == reason) {
			return l
		}
	}
	return nil
}

// outputAction returns a result with output and details, after fn.
type outputAction struct {
	out     string
	details map[string]any
	block   bool // wait for ctx to end (SIGTERM during the action)
	started chan struct{}
	calls   int
}

func (a *outputAction) Run(ctx context.Context, _ actions.Incident) (actions.Result, error) {
	a.calls++
	if a.started != nil {
		close(a.started)
	}
	res := actions.Result{Message: "exit 0", Output: a.out, Details: a.details}
	if a.block {
		<-ctx.Done()
		res.Message = "cancelled; process group killed"
		return res, ctx.Err()
	}
	return res, nil
}

// TestNonFiniteAlertValueIsRecorded: an alert whose value is NaN (a ratio
// dividing by zero), with ±Inf in the action's details, still yields full
// audit records, a persisted incidents.json and a marshallable snapshot.
func TestNonFiniteAlertValueIsRecorded(t *testing.T) {
	dir := t.TempDir()
	audit, err := OpenAudit(filepath.Join(dir, FileAudit))
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	act := &outputAction{out: "restarted pid 42", details: map[string]any{"ratio": math.Inf(1), "list": []any{math.Inf(-1)}}}
	f := newFixture(t, Options{Journal: audit, StatePath: filepath.Join(dir, FileIncidents), Steps: map[string]*Step{
		"fix": {Name: "fix", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	}})
	a := alert
	a.Value, a.Ladder = math.NaN(), []string{"fix"}
	f.e.Observe(f.clk.Now(), []Alert{a})
	f.rec.next(t, RemediationStarted)
	f.advance(10 * time.Second)
	f.rec.next(t, IncidentExhausted)

	lines := auditLines(t, filepath.Join(dir, FileAudit))
	failed := findAudit(lines, string(RemediationFailed), ReasonVerify)
	if failed == nil || failed["value"] != "NaN" || failed["action"] != "fix" || failed["step"] != 1.0 ||
		failed["output"] != "restarted pid 42" || failed["details"].(map[string]any)["ratio"] != "+Inf" {
		t.Fatalf("failed record lost its content: %v", failed)
	}
	for _, l := range lines {
		if _, bad := l["marshalError"]; bad {
			t.Fatalf("a record was reduced to its marshal error: %v", l)
		}
	}
	b, err := json.Marshal(f.e.Incidents())
	if err != nil || !strings.Contains(string(b), `"value":"NaN"`) {
		t.Fatalf("snapshot: %s %v", b, err)
	}
	var views []IncidentView
	if err := json.Unmarshal(b, &views); err != nil || !math.IsNaN(views[0].Value) || !math.IsNaN(views[0].Attempts[0].Value) {
		t.Fatalf("snapshot does not read back: %v %+v", err, views)
	}
	// exhaust() saves right after it emits the event.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		saved, err := os.ReadFile(filepath.Join(dir, FileIncidents))
		var sf incidentFile
		if err == nil && json.Unmarshal(saved, &sf) == nil && len(sf.Incidents) == 1 && sf.Incidents[0].State == StateExhausted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("incidents.json not persisted: %v\n%s", err, saved)
		}
	}
	// A restart restores it as exhausted (it would resume the ladder had
	// the file not been written).
	loaded := loadIncidents(filepath.Join(dir, FileIncidents), f.e.o.Logger, nil, f.clk.Now())
	if sv := loaded[a.Key]; sv.State != StateExhausted || !math.IsNaN(sv.Attempts[0].Value) {
		t.Fatalf("restored %+v", sv)
	}
}

func TestAuditTruncatedTailIsMovedAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileAudit)
	good := `{"time":"2026-11-22T04:00:00Z","type":"IncidentOpened","incident":"a","alert":"X","value":1}` + "\n"
	partial := `{"time":"2026-11-22T04:00:01Z","type":"RemediationStarted","incid`
	if err := os.WriteFile(path, []byte(good+partial), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(a.Repaired, "moved to "+path+".damaged") {
		t.Fatalf("Repaired = %q", a.Repaired)
	}
	if err := a.Append(Event{Time: time.Date(2026, 11, 22, 4, 1, 0, 0, time.UTC), Type: IncidentResolved, IncidentID: "a"}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	lines := auditLines(t, path)
	if len(lines) != 3 || lines[0]["type"] != "IncidentOpened" || lines[1]["type"] != string(AuditRepaired) || lines[2]["type"] != "IncidentResolved" {
		t.Fatalf("audit after repair: %v", lines)
	}
	if b, _ := os.ReadFile(path + ".damaged"); string(b) != partial+"\n" {
		t.Fatalf("damaged tail kept as %q", b)
	}
}

func TestAuditCompleteRecordWithoutNewlineIsKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileAudit)
	rec := `{"time":"2026-11-22T04:00:00Z","type":"IncidentOpened","incident":"a","alert":"X","value":1}`
	if err := os.WriteFile(path, []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	a.Record(Event{Type: IncidentResolved, IncidentID: "a"})
	a.Close()
	lines := auditLines(t, path)
	if len(lines) != 3 || lines[0]["incident"] != "a" || lines[1]["type"] != string(AuditRepaired) || !strings.Contains(a.Repaired, "newline added") {
		t.Fatalf("audit: %v (%q)", lines, a.Repaired)
	}
	if _, err := os.Stat(path + ".damaged"); err == nil {
		t.Fatal("a complete record was moved aside")
	}
}

// TestShutdownDuringAttemptWritesEndRecord: SIGTERM (the engine's context
// ending) while an action runs, or while it is verified, leaves an
// interrupted end record with the output in the audit log.
func TestShutdownDuringAttemptWritesEndRecord(t *testing.T) {
	for _, during := range []string{"action", "verify"} {
		t.Run(during, func(t *testing.T) {
			dir := t.TempDir()
			audit, err := OpenAudit(filepath.Join(dir, FileAudit))
			if err != nil {
				t.Fatal(err)
			}
			defer audit.Close()
			act := &outputAction{out: "stopping agent...", block: during == "action", started: make(chan struct{})}
			clk := clock.NewFake(time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC))
			// During the action: live (the action runs in its goroutine and
			// returns when cancelled); during verify: stepped.
			e := New(Options{Clock: clk, Journal: audit, StatePath: filepath.Join(dir, FileIncidents), Sync: during == "verify", Steps: map[string]*Step{
				"fix": {Name: "fix", Action: act, Backoff: constant(time.Second, 2), Verify: time.Minute},
			}})
			ctx, cancel := context.WithCancel(context.Background())
			e.Start(ctx)
			a := alert
			a.Ladder = []string{"fix"}
			e.Observe(clk.Now(), []Alert{a})
			<-act.started
			if inc := e.Incidents(); during == "verify" && (len(inc[0].Attempts) != 1 || inc[0].Attempts[0].Result != "running") {
				t.Fatalf("not being verified: %+v", inc)
			}
			cancel()
			e.Wait()
			lines := auditLines(t, filepath.Join(dir, FileAudit))
			end := findAudit(lines, string(RemediationFailed), ReasonInterrupted)
			if findAudit(lines, string(RemediationStarted), "") == nil || end == nil || end["output"] != "stopping agent..." ||
				end["attempt"] != 1.0 || !strings.Contains(end["message"].(string), "medic stopped") {
				t.Fatalf("no interrupted end record with the output:\n%v", lines)
			}
			var sf incidentFile
			b, _ := os.ReadFile(filepath.Join(dir, FileIncidents))
			if err := json.Unmarshal(b, &sf); err != nil || sf.Incidents[0].Attempts[0].Reason != ReasonInterrupted {
				t.Fatalf("incidents.json: %v %s", err, b)
			}
		})
	}
}

func TestBudgetsInTheFutureAreClampedToNow(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileBudgets)
	now := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	future := now.Add(30 * 24 * time.Hour)
	b, _ := json.Marshal(budgetFile{Version: 1, Runs: map[string][]time.Time{"restart": {future, future}}})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	bud := OpenBudgets(path, now, nil)
	// Clamped to now: they count for one window from now, not for 30 days.
	if ok, used, _ := bud.Check("restart", 3, time.Hour, now.Add(time.Minute)); !ok || used != 2 {
		t.Fatalf("at now+1m: ok=%v used=%d", ok, used)
	}
	if ok, used, _ := bud.Check("restart", 2, time.Hour, now.Add(61*time.Minute)); !ok || used != 0 {
		t.Fatalf("after the window: ok=%v used=%d (runs %v)", ok, used, bud.Used("restart"))
	}
}

// TestUnusableBudgetsCountAsSpent: a corrupt budgets.json or one of an
// unknown version does not stop medic; it is moved aside and every budget
// counts as spent for one window, also across a restart.
func TestUnusableBudgetsCountAsSpent(t *testing.T) {
	for name, content := range map[string]string{
		"corrupt":         `{"version":1,"runs":{"restart":["2026-11-22T03:`,
		"unknown version": `{"version":7,"runs":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileBudgets)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
			b := OpenBudgets(path, now, nil)
			if !strings.Contains(b.Problem(), "counts as spent") || !strings.Contains(b.Problem(), "moved to") {
				t.Fatalf("problem %q", b.Problem())
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("moved aside: %v", aside)
			}
			if kept, _ := os.ReadFile(aside[0]); string(kept) != content {
				t.Fatalf("aside holds %q", kept)
			}
			if ok, _, why := b.Check("restart", 3, time.Hour, now.Add(59*time.Minute)); ok || !strings.Contains(why, "record was lost") {
				t.Fatalf("within the window: ok=%v %q", ok, why)
			}
			// A restart within the window still counts it as spent.
			b2 := OpenBudgets(path, now.Add(30*time.Minute), nil)
			if ok, _, _ := b2.Check("restart", 3, time.Hour, now.Add(59*time.Minute)); ok {
				t.Fatal("a restart forgot that the record was lost")
			}
			if ok, _, _ := b2.Check("restart", 3, time.Hour, now.Add(61*time.Minute)); !ok {
				t.Fatal("still spent after the window passed")
			}
			if ok, _, _ := b2.Check("restart", 3, 24*time.Hour, now.Add(61*time.Minute)); ok {
				t.Fatal("a longer window must stay spent")
			}
		})
	}
}

func TestIncidentsOfUnknownVersionAreMovedAsideAndNoted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileIncidents)
	if err := os.WriteFile(path, []byte(`{"version":2,"incidents":[{"key":"k"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := NewStateHealth(dir)
	got := loadIncidents(path, slog.New(slog.DiscardHandler), h, time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC))
	notes := h.Notes()
	if len(got) != 0 || len(notes) != 1 || !strings.Contains(notes[0].Message, "unknown version 2") {
		t.Fatalf("loaded %v, notes %v", got, notes)
	}
	if aside, _ := filepath.Glob(path + ".corrupt-20261122T040000Z"); len(aside) != 1 {
		t.Fatal("not moved aside")
	}
}

// mountTmpfs mounts a tmpfs of size at a new directory (root only). It
// skips when mounting is impossible here, except in CI.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs (needed for the full-disk test): %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes dir/filler until the filesystem is full.
func fill(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// TestFullStateDirRunsNothing: with the state dir's filesystem full (a real
// 64 KiB tmpfs), a budget-limited action never runs, however often medic
// restarts: each attempt is suppressed with reason "state" (counted and
// shown). Once space is freed the same attempt runs and is recorded.
func TestFullStateDirRunsNothing(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	act := &funcAction{}
	steps := map[string]*Step{"restart": {Name: "restart", Action: act, Backoff: constant(time.Second, 1),
		Verify: 10 * time.Second, Budget: &Budget{Max: 2, Window: time.Hour}}}
	start := func(now time.Time) (*fixture, *Audit) {
		t.Helper()
		audit := NewAudit(filepath.Join(dir, FileAudit))
		t.Cleanup(func() { audit.Close() })
		f := newFixture(t, Options{Steps: steps, Budgets: OpenBudgets(filepath.Join(dir, FileBudgets), now, nil),
			Journal: audit, State: NewStateHealth(dir), StatePath: filepath.Join(dir, FileIncidents)})
		f.clk.Set(now)
		return f, audit
	}
	base := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	if _, err := os.Create(filepath.Join(dir, FileAudit)); err != nil {
		t.Fatal(err)
	}
	fill(t, dir)
	// Four "restarts" of medic on the full disk.
	for i := range 4 {
		f, _ := start(base.Add(time.Duration(i) * time.Minute))
		f.fire("restart")
		ev := f.rec.next(t, RemediationSuppressed)
		if ev.Reason != ReasonState || !strings.Contains(ev.Message, "budget run could not be recorded") {
			t.Fatalf("restart %d: %+v", i, ev)
		}
		if got := testutil.ToFloat64(f.e.o.Metrics.suppressed.WithLabelValues("restart", ReasonState)); got != 1 {
			t.Fatalf("suppressed{reason=state} = %v", got)
		}
		if p := problemOf(f.e.o.State, FileBudgets); !strings.Contains(p, "no space") {
			t.Fatalf("state problems %+v", f.e.o.State.Problems())
		}
		if inc := f.incident(); inc.Attempts[0].Reason != ReasonState {
			t.Fatalf("snapshot %+v", inc.Attempts)
		}
		// A recheck on a still-full disk: still nothing, not recorded again.
		f.advance(5 * time.Second)
		f.advance(0)
		if act.calls.Load() != 0 {
			t.Fatalf("restart %d: the action ran on a full state dir", i)
		}
		f.e.o.Budgets.mu.Lock()
		n := len(f.e.o.Budgets.runs["restart"])
		f.e.o.Budgets.mu.Unlock()
		if n != 0 {
			t.Fatalf("a run that was not recorded counts in memory: %d", n)
		}
		f.resolve()
	}
	// Space freed: the next recheck runs the attempt, recorded first.
	f, _ := start(base.Add(10 * time.Minute))
	f.fire("restart")
	f.rec.next(t, RemediationSuppressed)
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	f.advance(5 * time.Second)
	f.rec.next(t, RemediationStarted)
	if act.calls.Load() != 1 {
		t.Fatalf("calls %d after space was freed", act.calls.Load())
	}
	if problemOf(f.e.o.State, FileBudgets) != "" || problemOf(f.e.o.State, FileAudit) != "" {
		t.Fatalf("problems after recovery: %+v", f.e.o.State.Problems())
	}
	if runs := OpenBudgets(filepath.Join(dir, FileBudgets), f.clk.Now(), nil).Used("restart"); len(runs) != 1 {
		t.Fatalf("budgets.json holds %v", runs)
	}
	if findAudit(auditLines(t, filepath.Join(dir, FileAudit)), string(RemediationStarted), "") == nil {
		t.Fatal("no start record in the audit")
	}
}

// TestUnwritableAuditRunsNothing: an action without a budget still runs
// only after its start is in the audit log (here a read-only tmpfs).
func TestUnwritableAuditRunsNothing(t *testing.T) {
	dir := mountTmpfs(t, "64k")
	if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, out)
	}
	audit := NewAudit(filepath.Join(dir, FileAudit))
	if audit.Err() == nil {
		t.Fatal("opening an audit log on a read-only fs worked")
	}
	act := &funcAction{}
	f := newFixture(t, Options{Journal: audit, State: NewStateHealth(dir), Steps: map[string]*Step{
		"notify": {Name: "notify", Action: act, Backoff: constant(time.Second, 1), Verify: 10 * time.Second},
	}})
	f.fire("notify")
	ev := f.rec.next(t, RemediationSuppressed)
	if ev.Reason != ReasonState || !strings.Contains(ev.Message, "audit log") {
		t.Fatalf("%+v", ev)
	}
	f.advance(5 * time.Second)
	f.advance(0)
	if act.calls.Load() != 0 {
		t.Fatal("the action ran without an audit record")
	}
	if err := f.e.o.State.Check(f.clk.Now(), 0); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write check: %v", err)
	}
}

func problemOf(h *StateHealth, file string) string {
	for _, p := range h.Problems() {
		if p.File == file {
			return p.Error
		}
	}
	return ""
}
