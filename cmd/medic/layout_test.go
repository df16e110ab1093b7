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
