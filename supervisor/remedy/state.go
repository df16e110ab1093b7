package remedy

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// State files in the state dir, as named in StateHealth problems.
const (
	FileAudit     = "audit.jsonl"
	FileBudgets   = "budgets.json"
	FileIncidents = "incidents.json"
	FileStateDir  = "stateDir" // the periodic write check of the directory itself
)

// StateProblem is one state file medic cannot write (or could not read).
type StateProblem struct {
	File  string    `json:"file"`
	Error string    `json:"error"`
	Since time.Time `json:"since"`
}

// StateHealth collects what is wrong with the state dir: failed writes of
// the audit log, budgets.json and incidents.json, and a periodic write
// check of the directory. While any write problem is present, medic is not
// ready and /status says so; budget-limited and audited attempts do not
// run (they are suppressed with reason "state"). A nil *StateHealth
// records nothing.
type StateHealth struct {
	// Dir is the state directory (for the write check and messages).
	Dir string

	mu        sync.Mutex
	problems  map[string]StateProblem
	notes     []StateNote
	lastCheck time.Time
}

// NewStateHealth returns a StateHealth for dir.
func NewStateHealth(dir string) *StateHealth {
	return &StateHealth{Dir: dir, problems: map[string]StateProblem{}}
}

// Report records the outcome of writing file at now: err clears a
// problem when nil. It reports whether the file's health changed (so a
// caller logs once per change, not once per write).
func (h *StateHealth) Report(file string, err error, now time.Time) (changed bool) {
	if h == nil {
		return err != nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	old, had := h.problems[file]
	if err == nil {
		delete(h.problems, file)
		return had
	}
	if had && old.Error == err.Error() {
		return false
	}
	since := now
	if had {
		since = old.Since
	}
	h.problems[file] = StateProblem{File: file, Error: err.Error(), Since: since}
	return true
}

// Problems lists the current problems by file name.
func (h *StateHealth) Problems() []StateProblem {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]StateProblem, 0, len(h.problems))
	for _, p := range h.problems {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// Writable reports whether no write problem is known.
func (h *StateHealth) Writable() bool { return len(h.Problems()) == 0 }

// Check writes, fsyncs and removes a small file in Dir, at most once per
// every (a full disk or a read-only remount shows up even while medic
// writes nothing else), and records the outcome as FileStateDir.
func (h *StateHealth) Check(now time.Time, every time.Duration) error {
	if h == nil || h.Dir == "" {
		return nil
	}
	h.mu.Lock()
	due := h.lastCheck.IsZero() || now.Sub(h.lastCheck) >= every || now.Before(h.lastCheck)
	if due {
		h.lastCheck = now
	}
	h.mu.Unlock()
	if !due {
		return nil
	}
	err := writeCheck(h.Dir)
	h.Report(FileStateDir, err, now)
	return err
}

// writeCheck proves dir takes a write: 4 KiB (a page, so a full tmpfs
// refuses it) written, fsynced and removed, and the directory fsynced.
func writeCheck(dir string) error {
	path := filepath.Join(dir, ".medic-write-check")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("state dir %s is not writable: %w", dir, err)
	}
	defer os.Remove(path)
	_, err = f.Write(make([]byte, 4096))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("state dir %s is not writable: %w", dir, err)
	}
	return nil
}

// StateRecovered is the audit record of a state file medic found damaged
// at start and recovered from (moved aside, treated safely).
const StateRecovered EventType = "StateRecovered"

// StateNote is a state file that was found damaged and recovered from.
type StateNote struct {
	File    string    `json:"file"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// Note records that file was recovered from (shown on /status until medic
// restarts).
func (h *StateHealth) Note(file, msg string, now time.Time) {
	if h == nil || msg == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.notes = append(h.notes, StateNote{File: file, Message: msg, At: now})
}

// Notes lists what was recovered from, oldest first.
func (h *StateHealth) Notes() []StateNote {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]StateNote(nil), h.notes...)
}
