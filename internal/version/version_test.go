package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func buildInfo(main string, settings ...string) func() (*debug.BuildInfo, bool) {
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/medic-sidecar/medic", Version: main}}
	for i := 0; i+1 < len(settings); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
	}
	return func() (*debug.BuildInfo, bool) { return bi, true }
}

func TestLdflagsWin(t *testing.T) {
	i := resolve("v1.2.3", "abc123", buildInfo("v0.0.1", "vcs.revision", "fff", "vcs.modified", "true"))
	if i.Version != "v1.2.3" || i.Revision != "abc123" || i.GoVersion != "go1.99.1" || i.Modified {
		t.Fatalf("%+v", i)
	}
}

func TestFallsBackToVCSData(t *testing.T) {
	i := resolve("", "", buildInfo("(devel)", "vcs.revision", "0123abcd", "vcs.modified", "true"))
	if i.Version != "dev" || i.Revision != "0123abcd" || !i.Modified {
		t.Fatalf("%+v", i)
	}
	if s := i.String(); s != "medic dev (revision 0123abcd (modified), go1.99.1)" {
		t.Fatalf("String: %q", s)
	}
	i = resolve("", "", buildInfo("v0.3.0"))
	if i.Version != "v0.3.0" || i.Revision != "unknown" {
		t.Fatalf("module version: %+v", i)
	}
}

func TestNoBuildInfo(t *testing.T) {
	i := resolve("", "", func() (*debug.BuildInfo, bool) { return nil, false })
	if i.Version != "dev" || i.Revision != "unknown" || i.GoVersion != "unknown" {
		t.Fatalf("%+v", i)
	}
}

func TestGetInThisBinary(t *testing.T) {
	i := Get()
	if !strings.HasPrefix(i.GoVersion, "go") || i.Version == "" || i.Revision == "" {
		t.Fatalf("%+v", i)
	}
}
