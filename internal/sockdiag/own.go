package sockdiag

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OwnInodes returns the inodes of every socket medic's own process holds
// open, read from /proc/self/fd ("socket:[N]"). medic shares the pod's
// network namespace with the agent, so without this a destroy aimed at the
// agent's connections to a peer would also hit medic's own connections to
// the same peer (a grpcStream probe, a tcp probe).
func OwnInodes() (map[uint32]bool, error) {
	return inodesIn("/proc/self/fd")
}

func inodesIn(dir string) (map[uint32]bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list own sockets: %w", err)
	}
	out := make(map[uint32]bool)
	for _, e := range ents {
		// An fd may close between ReadDir and Readlink: skip it.
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		num, ok := strings.CutPrefix(l, "socket:[")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(num, "]"), 10, 32)
		if err != nil {
			continue
		}
		out[uint32(n)] = true
	}
	return out, nil
}
