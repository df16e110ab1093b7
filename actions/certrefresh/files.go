package certrefresh

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/medic-sidecar/medic/internal/atomicfile"
)

// ErrNotRegular is returned when a target path exists but is not a
// regular file (a symlink, a directory, a socket): medic never replaces
// something it did not write.
var ErrNotRegular = errors.New("not a regular file")

// WriteAtomic makes path hold data with mode perm, unless it already
// does, through atomicfile.Write: a reader sees either the old content or
// the new, never a mix, and a crash leaves one of the two. It reports
// whether it wrote (also when the write is in place but not yet durable).
func WriteAtomic(path string, data []byte, perm fs.FileMode) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return false, fmt.Errorf("%s: %w (%s); refusing to replace it", path, ErrNotRegular, fi.Mode().Type())
	case err == nil && fi.Mode().Perm() == perm:
		old, rerr := os.ReadFile(path)
		if rerr == nil && bytes.Equal(old, data) {
			return false, nil
		}
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("stat %s: %w", path, err)
	}

	if err := atomicfile.Write(path, data, perm); err != nil {
		return errors.Is(err, atomicfile.ErrNotDurable), err
	}
	return true, nil
}
