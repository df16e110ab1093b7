package remedy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// FilePauser reports paused while a file exists (stateDir/paused).
type FilePauser struct{ Path string }

// Paused implements Pauser.
func (f FilePauser) Paused() (bool, string) {
	if _, err := os.Lstat(f.Path); err == nil {
		return true, "pause file " + f.Path + " exists"
	}
	return false, ""
}

// Budgets tracks runs per action in a sliding window, persisted to a file
// (atomically: temp file, fsync, rename) so a crash-looping medic cannot
// reset its own limits.
type Budgets struct {
	path string

	mu   sync.Mutex
	runs map[string][]time.Time
}

// LoadBudgets reads path if it exists. A corrupt file is an error: the
// caller decides (medic refuses to start rather than forget its limits).
func LoadBudgets(path string) (*Budgets, error) {
	b := &Budgets{path: path, runs: map[string][]time.Time{}}
	data, err := os.ReadFile(path)
	switch {
	case os.IsNotExist(err):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("read budgets: %w", err)
	}
	var f budgetFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("budgets file %s is corrupt (move it away to reset budgets): %w", path, err)
	}
	for k, v := range f.Runs {
		b.runs[k] = v
	}
	return b, nil
}

type budgetFile struct {
	Version int                    `json:"version"`
	Runs    map[string][]time.Time `json:"runs"`
}

// Allow reports whether action may run once more at now under max per window.
func (b *Budgets) Allow(action string, max int, window time.Duration, now time.Time) (bool, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, t := range b.runs[action] {
		if now.Sub(t) < window {
			n++
		}
	}
	return n < max, n
}

// Consume records a run at now (dropping runs older than keep) and persists.
func (b *Budgets) Consume(action string, now time.Time, keep time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var kept []time.Time
	for _, t := range b.runs[action] {
		if now.Sub(t) < keep {
			kept = append(kept, t)
		}
	}
	b.runs[action] = append(kept, now)
	return b.saveLocked()
}

// Used returns the recorded run times of action (for status).
func (b *Budgets) Used(action string) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := append([]time.Time(nil), b.runs[action]...)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

func (b *Budgets) saveLocked() error {
	if b.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(budgetFile{Version: 1, Runs: b.runs}, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(b.path, data, 0o600)
}

// WriteFileAtomic writes data to a temp file beside path, fsyncs it,
// renames it over path and fsyncs the directory.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
