//go:build !linux

package socketcleanup

// cleanUnix is Linux-only (it relies on O_PATH and /proc/self/fd): every
// path is left alone.
func (a *Action) cleanUnix(bool) report {
	var rep report
	for _, p := range a.c.Paths {
		rep.skip(p, "socket cleanup needs Linux; left alone")
	}
	return rep
}
