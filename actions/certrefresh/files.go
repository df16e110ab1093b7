package certrefresh

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotRegular is returned when a target path exists but is not a
// regular file (a symlink, a directory, a socket): medic never replaces
// something it did not write.
var ErrNotRegular = errors.New("not a regular file")

// WriteAtomic makes path hold data with mode perm, unless it already
// does. It writes a temporary file in the same directory, fsyncs it,
// renames it over path and fsyncs the directory, so a reader sees either
// the old content or the new, never a mix, and a crash leaves one of the
// two. It reports whether it wrote.
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

	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".medic-*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("rename into %s: %w", path, err)
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return true, fmt.Errorf("fsync directory of %s: %w", path, err)
	}
	return true, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
