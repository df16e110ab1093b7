package remedy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/medic-sidecar/medic/internal/atomicfile"
	"github.com/medic-sidecar/medic/internal/statefile"
)

// budgetsVersion is the format of budgets.json this medic reads and writes.
const budgetsVersion = 1

// Budgets tracks runs per action in a sliding window, persisted to a file
// so a crash-looping medic cannot reset its own limits. A run is recorded
// before the action runs (write-ahead: Consume returns only once the file
// and its directory are fsynced); when that fails, the run does not happen.
//
// When the record is lost (budgets.json corrupt, of an unknown version or
// unreadable), the file is moved aside and every budget counts as spent
// for one of its windows from then: the safest reading of "we do not know
// how often we acted".
type Budgets struct {
	path string

	mu   sync.Mutex
	runs map[string][]time.Time
	// lostAt is when the record was found lost; every budget counts as
	// spent until its window has passed since then.
	lostAt  time.Time
	problem string // why, for the log, /status and the audit
}

type budgetFile struct {
	Version int                    `json:"version"`
	Runs    map[string][]time.Time `json:"runs"`
	// LostAt survives restarts: a record that was lost stays "spent" for
	// a window even if medic restarts meanwhile.
	LostAt time.Time `json:"lostAt,omitzero"`
}

// LoadBudgets is OpenBudgets at the wall clock, logging nowhere. It never
// fails (the error is kept for callers written against the old contract).
func LoadBudgets(path string) (*Budgets, error) {
	return OpenBudgets(path, time.Now(), nil), nil
}

// OpenBudgets reads path if it exists. It never fails: medic must start
// (and report) rather than crash-loop on a bad state file.
//   - run times in the future (a clock that jumped back, a hand-edited
//     file) are clamped to now, with a warning;
//   - a corrupt file, an unknown version or an unreadable file is moved
//     aside (path.corrupt-<time>) and every budget is treated as spent until
//     its window has passed since now (Problem says so).
func OpenBudgets(path string, now time.Time, log *slog.Logger) *Budgets {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Budgets{path: path, runs: map[string][]time.Time{}}
	if path == "" {
		return b
	}
	var f budgetFile
	data, err := statefile.Load(path, budgetsVersion, &f)
	if errors.Is(err, fs.ErrNotExist) {
		return b
	}
	if err != nil {
		b.lose(now, data, err, log)
		return b
	}
	clamped := 0
	for k, v := range f.Runs {
		for i, t := range v {
			if t.After(now) {
				v[i] = now
				clamped++
			}
		}
		b.runs[k] = v
	}
	if !f.LostAt.IsZero() {
		b.lostAt = f.LostAt
		if b.lostAt.After(now) {
			b.lostAt = now
		}
		b.problem = fmt.Sprintf("budgets were lost at %s; every budget counts as spent for one window from then",
			b.lostAt.UTC().Format(time.RFC3339))
	}
	if clamped > 0 {
		log.Warn("budgets.json holds run times in the future (clock moved back or file edited); clamped to now",
			"path", path, "runs", clamped, "now", now)
	}
	return b
}

// lose handles an unusable budgets.json: keep its bytes aside, start a new
// record that says when it was lost, and treat every budget as spent.
func (b *Budgets) lose(now time.Time, data []byte, cause error, log *slog.Logger) {
	b.lostAt = now
	aside := ""
	b.problem = fmt.Sprintf("budgets.json unusable (%v); every budget counts as spent for one window from %s",
		cause, now.UTC().Format(time.RFC3339))
	// Move aside by copying first: if the copy or the new record cannot be
	// written, the bad file stays where it is, so the next start finds it
	// again and again treats the budgets as spent.
	if data != nil {
		var err error
		if aside, err = statefile.MoveAside(b.path, data, now); err != nil {
			b.problem += fmt.Sprintf("; could not move it aside (%v)", err)
			log.Error("budgets unusable; treating every budget as spent", "path", b.path, "err", cause, "moveAsideErr", err)
			return
		}
		b.problem += "; moved to " + aside
	}
	b.mu.Lock()
	err := b.saveLocked(b.runs)
	b.mu.Unlock()
	if err != nil {
		b.problem += fmt.Sprintf("; the new record could not be written (%v)", err)
	}
	log.Error("budgets unusable; treating every budget as spent for one window", "path", b.path, "err", cause,
		"movedTo", aside, "until", "now + each action's budget window")
}

// Problem describes a lost record ("" when the record is intact).
func (b *Budgets) Problem() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.problem
}

// Check reports whether action may run once more at now under max per
// window, how many runs count against it, and why not.
func (b *Budgets) Check(action string, max int, window time.Duration, now time.Time) (ok bool, used int, why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.lostAt.IsZero() && now.Sub(b.lostAt) < window {
		return false, max, fmt.Sprintf("budget treated as spent until %s: the budget record was lost (%s)",
			b.lostAt.Add(window).UTC().Format(time.RFC3339), b.problem)
	}
	for _, t := range b.runs[action] {
		if now.Sub(t) < window {
			used++
		}
	}
	if used >= max {
		return false, used, fmt.Sprintf("budget spent: %d of %d runs in the last %s", used, max, window)
	}
	return true, used, ""
}

// Allow reports whether action may run once more at now under max per window.
func (b *Budgets) Allow(action string, max int, window time.Duration, now time.Time) (bool, int) {
	ok, used, _ := b.Check(action, max, window, now)
	return ok, used
}

// Consume records a run at now (dropping runs older than keep) and
// persists it durably. On error nothing is recorded and the caller must
// not run the action.
func (b *Budgets) Consume(action string, now time.Time, keep time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var kept []time.Time
	for _, t := range b.runs[action] {
		if now.Sub(t) < keep {
			kept = append(kept, t)
		}
	}
	next := make(map[string][]time.Time, len(b.runs)+1)
	for k, v := range b.runs {
		next[k] = v
	}
	next[action] = append(kept, now)
	if err := b.saveLocked(next); err != nil {
		return fmt.Errorf("recording the run in %s: %w", b.path, err)
	}
	b.runs = next
	return nil
}

// memoryCopy returns a Budgets holding b's runs that records further runs
// in memory only (a dry run's would-be runs).
func (b *Budgets) memoryCopy() *Budgets {
	b.mu.Lock()
	defer b.mu.Unlock()
	return &Budgets{runs: maps.Clone(b.runs), lostAt: b.lostAt, problem: b.problem}
}

// Used returns the recorded run times of action (for status).
func (b *Budgets) Used(action string) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]time.Time(nil), b.runs[action]...)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// LostAt is when the budget record was found lost (zero when intact).
func (b *Budgets) LostAt() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lostAt
}

func (b *Budgets) saveLocked(runs map[string][]time.Time) error {
	if b.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(budgetFile{Version: budgetsVersion, Runs: runs, LostAt: b.lostAt}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(b.path, data, 0o600)
}
