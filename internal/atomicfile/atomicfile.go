// Package atomicfile replaces a file's content so that a reader sees the
// old content or the new, never a mix, and a crash leaves one of the two.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotDurable marks an error after the new content was renamed into
// place: readers see it, but the directory's fsync failed, so a crash may
// still bring the old content back.
var ErrNotDurable = errors.New("written, but not durable")

// Write makes path hold data with mode perm: it writes a temporary file in
// path's directory, fsyncs it, renames it over path and fsyncs the
// directory. It returns nil only once the new content is durable. An
// error wrapping ErrNotDurable comes after the rename; any other error
// leaves path as it was and removes the temporary file.
func Write(path string, data []byte, perm fs.FileMode) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".medic-tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("fsync directory of %s: %w: %w", path, ErrNotDurable, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
