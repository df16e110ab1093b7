// Package statefile reads medic's versioned JSON state files (budgets.json,
// incidents.json) and keeps an unusable one aside, so that a bad state
// file is reported, never fatal, and its content is not lost.
package statefile

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/medic-sidecar/medic/internal/atomicfile"
)

// Load reads the JSON state file path into v. The file's "version" must
// be want. A missing file is an error wrapping fs.ErrNotExist; any other
// error means the file is unusable (unreadable, not JSON, of another
// version), and data holds the bytes read (nil when none), for MoveAside.
func Load(path string, want int, v any) (data []byte, err error) {
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var h struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return data, err
	}
	if h.Version != want {
		return data, fmt.Errorf("unknown version %d (this medic reads version %d; was it written by another medic release?)", h.Version, want)
	}
	return data, json.Unmarshal(data, v)
}

// MoveAside keeps data, the content of the unusable state file path, at
// path.corrupt-<now> (written atomically, so a crash leaves all of it or
// none) and returns that name. The file at path is left for the caller to
// replace or remove: until it does, the next start finds it unusable
// again. With data nil (the file could not be read) the file itself is
// renamed there.
func MoveAside(path string, data []byte, now time.Time) (string, error) {
	aside := fmt.Sprintf("%s.corrupt-%s", path, now.UTC().Format("20060102T150405Z"))
	if data == nil {
		return aside, os.Rename(path, aside)
	}
	return aside, atomicfile.Write(aside, data, 0o600)
}
