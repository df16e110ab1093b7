package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// recorder is a testing.TB whose Skipf and Fatalf record the message and
// end the goroutine, as the real ones do.
type recorder struct {
	*testing.T
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func startWith(t *testing.T) *recorder {
	r := &recorder{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(r)
	}()
	<-done
	return r
}

func TestStartSkipsOrFailsWithoutBinaries(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(EnvBin, empty)

	t.Setenv(EnvRequire, "")
	r := startWith(t)
	if !strings.Contains(r.skipped, "bash scripts/kube-testenv.sh") || r.failed != "" {
		t.Errorf("without binaries: skipped %q failed %q, want a skip saying how to build them", r.skipped, r.failed)
	}

	t.Setenv(EnvRequire, "1")
	r = startWith(t)
	if !strings.Contains(r.failed, "MEDIC_REQUIRE_KUBE=1 requires a control plane") || r.skipped != "" {
		t.Errorf("with %s=1: skipped %q failed %q, want a failure", EnvRequire, r.skipped, r.failed)
	}
}

func TestFindBinaries(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBin, dir)
	if _, err := FindBinaries(); err == nil {
		t.Fatal("empty dir: no error")
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(dir, b), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := FindBinaries(); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Fatalf("non-executable: %v", err)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		os.Chmod(filepath.Join(dir, b), 0o755)
	}
	if got, err := FindBinaries(); err != nil || got != dir {
		t.Fatalf("FindBinaries = %q, %v", got, err)
	}
}

func TestStartRunsARealControlPlane(t *testing.T) {
	env := Start(t)
	cs := env.AdminClient(t)
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v"+KubeVersion {
		t.Errorf("server version %s, want v%s", v.GitVersion, KubeVersion)
	}
	t.Logf("kube-apiserver %s ready in %s (dir %s)", v.GitVersion, env.StartupTime, env.Dir)
}
