package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// testOnly are the module's packages that exist for tests: the peers that
// stand in for SPIRE, KubeArmor, the Workload API and Alertmanager, the real
// kube-apiserver harness, the plugin builders, the node end-to-end set-up
// and the probes' test harness.
// None of them may link into the product binary. The one peer the binary
// carries on purpose is internal/demo/spireagent (`medic demo` runs it).
var testOnly = []string{
	"github.com/medic-sidecar/medic/internal/testpeers",
	"github.com/medic-sidecar/medic/internal/kubetest",
	"github.com/medic-sidecar/medic/internal/plugintest",
	"github.com/medic-sidecar/medic/internal/nodee2e",
	"github.com/medic-sidecar/medic/plugins/internal/testplugins",
	"github.com/medic-sidecar/medic/supervisor/probe/internal/probetest",
	"github.com/medic-sidecar/medic/internal/proc/proctest",
}

// layers are the binary's packages top-down, as docs/architecture.md
// lists them: a package imports only packages of its own row or of rows
// below it. "x/..." is x and every package under it.
var layers = [][]string{
	{"cmd/..."},
	{"supervisor", "supervisor/builtin", "supervisor/ruletest", "supervisor/replay"},
	{"supervisor/config"},
	{"supervisor/kube", "supervisor/server", "supervisor/api", "supervisor/notify", "supervisor/sources"},
	{"supervisor/remedy", "plugins/...", "actions/..."},
	{"supervisor/rules"},
	{"supervisor/store"},
	{"supervisor/probe/..."},
	{"internal/..."},
}

// layerOf returns the row of a package of the module, -1 when no row
// names it.
func layerOf(pkg string) int {
	const mod = "github.com/medic-sidecar/medic/"
	rel, ok := strings.CutPrefix(pkg, mod)
	if !ok {
		return -1
	}
	for i, row := range layers {
		for _, e := range row {
			if tree, ok := strings.CutSuffix(e, "/..."); ok && (rel == tree || strings.HasPrefix(rel, tree+"/")) || rel == e {
				return i
			}
		}
	}
	return -1
}

// TestImportsPointDown checks every package the binary links against
// layers: each has a row, and none imports a package of a row above it.
func TestImportsPointDown(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if !strings.HasPrefix(f[0], "github.com/medic-sidecar/medic/") {
			continue
		}
		from := layerOf(f[0])
		if from < 0 {
			t.Errorf("%s has no row in layers (and docs/architecture.md)", f[0])
			continue
		}
		checked++
		for _, imp := range f[1:] {
			if to := layerOf(imp); to >= 0 && to < from {
				t.Errorf("%s imports %s, a row above it", f[0], imp)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d packages: the listing is not the binary's", checked)
	}
}

// TestBinaryLinksNoTestPeers lists what `go build ./cmd/medic` links (its
// transitive imports, tests excluded) and fails on any test-only package.
func TestBinaryLinksNoTestPeers(t *testing.T) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goBin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	var demo bool
	for _, p := range deps {
		for _, prefix := range testOnly {
			if p == prefix || strings.HasPrefix(p, prefix+"/") {
				t.Errorf("the medic binary links the test-only package %s", p)
			}
		}
		demo = demo || p == "github.com/medic-sidecar/medic/internal/demo/spireagent"
	}
	// The list is the binary's: it must contain the demo's peer, or the
	// check above looked at the wrong package.
	if !demo {
		t.Errorf("go list -deps . does not list internal/demo/spireagent; got %d packages", len(deps))
	}
}
