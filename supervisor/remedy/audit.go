package remedy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// AuditRepaired is the audit record written when OpenAudit found a
// damaged last line (medic crashed mid-write) and set it aside.
const AuditRepaired EventType = "AuditRepaired"

// Journal is the write-ahead record of attempts: an attempt runs only
// after its RemediationStarted record was appended durably. Audit is the
// Journal medic uses.
type Journal interface {
	Append(ev Event) error
}

// Audit appends every event as one JSON line to a file and fsyncs it, so
// the record survives a crash right after an action.
type Audit struct {
	path string

	mu  sync.Mutex
	f   *os.File // nil until opened (NewAudit retries on every Append)
	err error    // last write error, reported once
	// OnError is called (outside the lock) when a write fails after
	// writes succeeded, and with nil when writes succeed again.
	OnError func(error)
	// Repaired says what OpenAudit did about a damaged last line ("" if
	// nothing was wrong).
	Repaired string
}

var _ Journal = (*Audit)(nil)

// OpenAudit opens (creating) path for appending. A last line without its
// newline (medic crashed in the middle of a write) is repaired first: if
// it is a complete JSON record it is newline-terminated, otherwise it is
// moved to path.damaged (appended) and cut off; either way an
// AuditRepaired record says so, and Repaired describes it for the log.
func OpenAudit(path string) (*Audit, error) {
	a := &Audit{path: path}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

// NewAudit is OpenAudit that does not give up: when the file cannot be
// opened (a read-only or full state dir), the Audit is returned all the
// same, Err says why, and every Append tries to open it again (and fails
// until it can, so nothing that must be recorded first runs meanwhile).
func NewAudit(path string) *Audit {
	a := &Audit{path: path}
	a.err = a.open()
	return a
}

// Err is the last open or write error (nil when the last write worked).
func (a *Audit) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// open opens the file and repairs its tail; callers hold no lock.
func (a *Audit) open() error {
	f, err := os.OpenFile(a.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	msg, err := repairTail(f, a.path)
	if err != nil {
		f.Close()
		return fmt.Errorf("repair audit log %s: %w", a.path, err)
	}
	a.mu.Lock()
	if a.f != nil { // opened meanwhile by another Append
		a.mu.Unlock()
		f.Close()
		return nil
	}
	a.f = f
	a.mu.Unlock()
	if msg != "" {
		a.Repaired = msg
		if err := a.Append(Event{Time: time.Now(), Type: AuditRepaired, Message: msg}); err != nil {
			a.Repaired += fmt.Sprintf(" (the record of the repair could not be written: %v)", err)
		}
	}
	return nil
}

// repairTail fixes a last line that lacks its newline; see OpenAudit.
func repairTail(f *os.File, path string) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	size := st.Size()
	if size == 0 {
		return "", nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, size-1); err != nil {
		return "", err
	}
	if last[0] == '\n' {
		return "", nil
	}
	// Find the start of the unterminated line, reading backwards.
	start := int64(0)
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		n := min(int64(len(buf)), end)
		chunk := buf[:n]
		if _, err := f.ReadAt(chunk, end-n); err != nil && err != io.EOF {
			return "", err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			start = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	tail := make([]byte, size-start)
	if _, err := f.ReadAt(tail, start); err != nil && err != io.EOF {
		return "", err
	}
	if json.Valid(tail) {
		if _, err := f.Write([]byte{'\n'}); err != nil {
			return "", err
		}
		if err := f.Sync(); err != nil {
			return "", err
		}
		return fmt.Sprintf("the last audit record (offset %d) lacked its newline (medic stopped mid-write); newline added", start), nil
	}
	aside := path + ".damaged"
	d, err := os.OpenFile(aside, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	_, err = d.Write(append(tail, '\n'))
	if err == nil {
		err = d.Sync()
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("saving the damaged tail to %s: %w", aside, err)
	}
	if err := f.Truncate(start); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	return fmt.Sprintf("the last audit line (%d bytes at offset %d) was cut short (medic stopped mid-write); moved to %s",
		len(tail), start, aside), nil
}

// Append writes ev as one line and fsyncs it; the error says the record is
// not durable.
func (a *Audit) Append(ev Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		// Details are free-form: drop them rather than the record.
		cp := ev
		cp.Details = map[string]any{"marshalError": err.Error()}
		if line, err = json.Marshal(cp); err != nil {
			line, _ = json.Marshal(map[string]any{"time": ev.Time, "type": ev.Type, "incident": ev.IncidentID,
				"action": ev.Action, "step": ev.Step, "attempt": ev.Attempt, "message": ev.Message, "marshalError": err.Error()})
		}
	}
	line = append(line, '\n')
	a.mu.Lock()
	if a.f == nil {
		a.mu.Unlock()
		if err := a.open(); err != nil {
			a.mu.Lock()
			a.err = err
			a.mu.Unlock()
			return err
		}
		a.mu.Lock()
	}
	var n int
	n, err = a.f.Write(line)
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil && n > 0 {
		// A partial line (disk full mid-write) would glue the next record
		// onto it: cut it off again.
		if st, serr := a.f.Stat(); serr == nil {
			_ = a.f.Truncate(st.Size() - int64(n))
		}
	}
	report := (err != nil) != (a.err != nil)
	a.err = err
	a.mu.Unlock()
	if report && a.OnError != nil {
		a.OnError(err)
	}
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

// Record implements Sink (errors go to OnError).
func (a *Audit) Record(ev Event) { _ = a.Append(ev) }

// Close closes the file.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	return a.f.Close()
}
