package remedy

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// Audit appends every event as one JSON line to a file and fsyncs it, so
// the record survives a crash right after an action.
type Audit struct {
	mu  sync.Mutex
	f   *os.File
	err error // last write error, reported once
	// OnError is called (outside the lock) when a write fails.
	OnError func(error)
}

// OpenAudit opens (creating) path for appending.
func OpenAudit(path string) (*Audit, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit log: %w", err)
	}
	return &Audit{f: f}, nil
}

// Record implements Sink.
func (a *Audit) Record(ev Event) {
	line, err := json.Marshal(ev)
	if err != nil {
		line, _ = json.Marshal(map[string]any{"time": ev.Time, "type": ev.Type, "incident": ev.IncidentID, "marshalError": err.Error()})
	}
	line = append(line, '\n')
	a.mu.Lock()
	_, err = a.f.Write(line)
	if err == nil {
		err = a.f.Sync()
	}
	report := err != nil && a.err == nil
	a.err = err
	a.mu.Unlock()
	if report && a.OnError != nil {
		a.OnError(err)
	}
}

// Close closes the file.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
