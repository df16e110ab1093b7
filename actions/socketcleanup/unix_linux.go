//go:build linux

package socketcleanup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// maxSunPath is the room for a path in sockaddr_un, NUL excluded.
const maxSunPath = 107

// cleanUnix checks every configured path and removes the stale sockets.
func (a *Action) cleanUnix(dryRun bool) report {
	var rep report
	allowed := resolveDirs(a.c.AllowedDirs)
	seen := map[string]bool{}
	for _, pat := range a.c.Paths {
		matches := []string{filepath.Clean(pat)}
		if hasMeta(pat) {
			// Validate checked the pattern, so Glob cannot fail.
			matches, _ = filepath.Glob(pat)
			if len(matches) == 0 {
				rep.skip(pat, "no file matches")
				continue
			}
		}
		for _, p := range matches {
			if seen[p] {
				continue
			}
			seen[p] = true
			a.cleanOne(&rep, p, allowed, dryRun)
		}
	}
	return rep
}

// resolveDirs resolves every symlink in the allowed dirs; a dir that does
// not exist allows nothing.
func resolveDirs(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// cleanOne removes p if it is provably a stale socket inside allowed.
//
// The parent directory is opened once (following symlinks) and every
// later step works relative to that descriptor, so swapping a directory
// for a symlink mid-way cannot redirect the unlink. The directory's real
// path is read back from the descriptor and must be inside an allowed
// dir. The file is never followed. Right before the unlink the file is
// stat'ed again (same device, inode and change time) and connected to
// again; what remains is the instant between that last check and
// unlinkat(2), which no path-based API closes.
func (a *Action) cleanOne(rep *report, p string, allowed []string, dryRun bool) {
	dir, base := filepath.Dir(p), filepath.Base(p)
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		rep.skip(p, "missing")
		return
	case errors.Is(err, unix.ENOTDIR):
		rep.skip(p, "missing (a parent is not a directory)")
		return
	case err != nil:
		rep.skip(p, fmt.Sprintf("cannot open its directory: %v", err))
		return
	}
	defer unix.Close(dfd)
	real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", dfd))
	if err != nil {
		rep.skip(p, fmt.Sprintf("cannot resolve its directory: %v", err))
		return
	}
	if ev, err := filepath.EvalSymlinks(dir); err != nil || ev != real {
		rep.skip(p, "its directory changed while being checked")
		return
	}
	if !lexicallyInside(real, allowed) {
		rep.skip(p, fmt.Sprintf("outside allowedDirs (its directory resolves to %s)", real))
		return
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			rep.skip(p, "missing")
		} else {
			rep.skip(p, fmt.Sprintf("cannot stat: %v", err))
		}
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		rep.skip(p, fileKind(st.Mode)+", not a socket")
		return
	}
	changed := time.Unix(st.Ctim.Unix())
	if age := a.clk.Now().Sub(changed); age < a.c.MinAge.D() {
		rep.skip(p, fmt.Sprintf("created or changed %s ago, less than minAge %s: may be binding right now", age.Round(time.Millisecond), a.c.MinAge))
		return
	}
	if stale, why := refused(dfd, real, base); !stale {
		rep.skip(p, why)
		return
	}
	if dryRun {
		rep.removed = append(rep.removed, p)
		return
	}
	if a.beforeRemove != nil {
		a.beforeRemove(p)
	}
	// Still the same file? An inode number can be reused at once by a
	// re-created socket, so the change time must match too, and the
	// socket must still refuse connections.
	var again unix.Stat_t
	if err := unix.Fstatat(dfd, base, &again, unix.AT_SYMLINK_NOFOLLOW); err != nil ||
		again.Dev != st.Dev || again.Ino != st.Ino || again.Ctim != st.Ctim || again.Mode&unix.S_IFMT != unix.S_IFSOCK {
		rep.skip(p, "replaced while being checked; left alone")
		return
	}
	if stale, why := refused(dfd, real, base); !stale {
		rep.skip(p, why+" (on the final check)")
		return
	}
	if err := unix.Unlinkat(dfd, base, 0); err != nil {
		rep.failed = append(rep.failed, fmt.Sprintf("%s: unlink: %v", p, err))
		rep.denied = rep.denied || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS)
		return
	}
	rep.removed = append(rep.removed, p)
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "symlink (never followed)"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFIFO:
		return "named pipe"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	}
	return "unknown file type"
}

// refused connects to base in the directory dfd and reports whether the
// kernel refused (nothing bound to that inode: stale). A live socket of
// another type answers EPROTOTYPE, so each type is tried; a stale file
// refuses whatever the type. Connects are non-blocking and never wait.
func refused(dfd int, real, base string) (bool, string) {
	path := fmt.Sprintf("/proc/self/fd/%d/%s", dfd, base)
	if len(path) > maxSunPath {
		path = filepath.Join(real, base)
	}
	if len(path) > maxSunPath {
		return false, "cannot prove stale: path too long for connect()"
	}
	for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_SEQPACKET, unix.SOCK_DGRAM} {
		fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return false, fmt.Sprintf("cannot prove stale: socket: %v", err)
		}
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		unix.Close(fd)
		switch {
		case err == nil:
			return false, "live: accepts connections"
		case errors.Is(err, unix.ECONNREFUSED):
			return true, ""
		case errors.Is(err, unix.EPROTOTYPE):
			continue
		case errors.Is(err, unix.EAGAIN):
			return false, "live: listening, backlog full"
		default:
			return false, fmt.Sprintf("cannot prove stale: connect: %v", err)
		}
	}
	return false, "cannot prove stale: no socket type could connect"
}
