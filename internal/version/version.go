// Package version says which medic this is: the version and revision set
// at build time with
//
//	-ldflags "-X github.com/medic-sidecar/medic/internal/version.Version=v1.2.3
//	          -X github.com/medic-sidecar/medic/internal/version.Revision=<commit>"
//
// (scripts/image.sh does), else what the Go toolchain recorded (the module
// version and the VCS revision of a build inside a git checkout).
package version

import (
	"fmt"
	"runtime/debug"
	"sync"
)

// Set at build time with -ldflags -X; empty means "ask the build info".
var (
	Version  string
	Revision string
)

// Info is the build's identity.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"goVersion"`
	// Modified is true when the build's VCS tree had uncommitted changes.
	Modified bool `json:"modified,omitempty"`
}

// String is the one line `medic version` prints.
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += " (modified)"
	}
	return fmt.Sprintf("medic %s (revision %s, %s)", i.Version, rev, i.GoVersion)
}

var get = sync.OnceValue(func() Info { return resolve(Version, Revision, debug.ReadBuildInfo) })

// Get returns this binary's Info.
func Get() Info { return get() }

// resolve prefers the -ldflags values and falls back to the build info;
// what neither knows is "unknown" ("dev" for the version).
func resolve(version, revision string, read func() (*debug.BuildInfo, bool)) Info {
	i := Info{Version: version, Revision: revision, GoVersion: "unknown"}
	if bi, ok := read(); ok {
		i.GoVersion = bi.GoVersion
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Revision == "" {
					i.Revision = s.Value
				}
			case "vcs.modified":
				i.Modified = revision == "" && s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	return i
}
