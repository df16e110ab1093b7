// Package kubetest runs a real control plane — etcd and kube-apiserver on
// loopback — for tests of medic's Kubernetes integration.
//
// The binaries come from scripts/kube-testenv.sh (kube-apiserver v1.36.3 and
// etcd v3.6.8, built from the Go module proxy and cached outside the
// repository). Start finds them in $MEDIC_KUBE_BIN or in the script's cache
// directory; without them the test is skipped with a message saying how to
// build them, unless MEDIC_REQUIRE_KUBE=1 (CI), where their absence fails.
//
// The API server runs with RBAC authorization and a static token file with
// two users: an admin (system:masters) and medic. The medic user is the
// ServiceAccount declared in deploy/base, and the harness binds it in its
// namespace with the Role and RoleBinding read from deploy/base — so every
// call a test makes through Env.Medic is authorized by exactly the rules
// that ship.
//
// One control plane serves all tests of a package: call Main from
// TestMain, and Start from each test.
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		env := kubetest.Start(t)
//		cs := env.MedicClient(t)
//		...
//	}
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/medic-sidecar/medic/internal/kubeclient"
	"k8s.io/client-go/rest"
)

// Version of the control plane the harness is built and tested against.
const (
	KubeVersion = "1.36.3"
	EtcdVersion = "3.6.8"
)

// Environment variables.
const (
	// EnvBin names a directory holding kube-apiserver and etcd.
	EnvBin = "MEDIC_KUBE_BIN"
	// EnvCache overrides the cache directory scripts/kube-testenv.sh builds into.
	EnvCache = "MEDIC_KUBE_CACHE"
	// EnvRequire set to 1 turns a missing control plane into a test failure.
	EnvRequire = "MEDIC_REQUIRE_KUBE"
)

// Namespace is where the medic user's Role from deploy/base is bound and
// where tests create their objects.
const Namespace = "medic-test"

// Env is a running control plane.
type Env struct {
	// Admin is authorized for everything (system:masters).
	Admin *rest.Config
	// Medic is authorized by deploy/base's Role in Namespace only.
	Medic *rest.Config
	// MedicUser is the medic token's user name,
	// system:serviceaccount:<Namespace>:<ServiceAccount from deploy/base>.
	MedicUser string
	// ServiceAccount is the ServiceAccount name read from deploy/base.
	ServiceAccount string
	// Namespace is where medic's Role is bound (the package constant).
	Namespace string
	// Dir holds the processes' data, certificates and logs.
	Dir string
	// StartupTime is how long etcd + kube-apiserver took to become ready.
	StartupTime time.Duration

	procs []*proc
}

// AdminClient returns a clientset for Admin.
func (e *Env) AdminClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	return mustClient(t, e.Admin)
}

// MedicClient returns medic's own client (internal/kubeclient, the API
// groups medic uses) with Medic's credentials.
func (e *Env) MedicClient(t testing.TB) *kubeclient.Clientset {
	t.Helper()
	cs, err := kubeclient.NewForConfig(e.Medic)
	if err != nil {
		t.Fatalf("kubetest: medic client: %v", err)
	}
	return cs
}

// MedicClientset returns client-go's full clientset with Medic's
// credentials, for tests that ask the API about medic's rights (access
// reviews) rather than act as medic.
func (e *Env) MedicClientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	return mustClient(t, e.Medic)
}

func mustClient(t testing.TB, c *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c)
	if err != nil {
		t.Fatalf("kubetest: clientset: %v", err)
	}
	return cs
}

var shared struct {
	sync.Mutex
	env     *Env
	err     error
	started bool
}

// Main runs the package's tests and then stops the shared control plane,
// if a test started one. Use it from TestMain; without it the control
// plane lives until the test binary exits (the processes die with it, and
// the next start removes their directory).
func Main(m *testing.M) int {
	code := m.Run()
	shared.Lock()
	defer shared.Unlock()
	if shared.env != nil {
		shared.env.Stop()
	}
	return code
}

// Start returns the package's control plane, starting it on first use.
// Without binaries it skips the test (fails it with MEDIC_REQUIRE_KUBE=1).
// Tests share it: give objects unique names.
func Start(t testing.TB) *Env {
	t.Helper()
	bin, err := FindBinaries()
	if err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("kubetest: %v (%s=1 requires a control plane)", err, EnvRequire)
		}
		t.Skipf("kubetest: %v; build them with `bash scripts/kube-testenv.sh` (or set %s)", err, EnvBin)
	}
	shared.Lock()
	defer shared.Unlock()
	if !shared.started {
		shared.started = true
		shared.env, shared.err = startEnv(bin)
		if shared.err == nil {
			t.Logf("kubetest: etcd v%s + kube-apiserver v%s ready in %s", EtcdVersion, KubeVersion, shared.env.StartupTime.Round(time.Millisecond))
		}
	}
	if shared.err != nil {
		t.Fatalf("kubetest: %v", shared.err)
	}
	return shared.env
}

// FindBinaries returns the directory holding kube-apiserver and etcd:
// $MEDIC_KUBE_BIN, else the cache of scripts/kube-testenv.sh.
func FindBinaries() (string, error) {
	dir := os.Getenv(EnvBin)
	if dir == "" {
		dir = os.Getenv(EnvCache)
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no %s and no home directory: %w", EnvBin, err)
		}
		dir = filepath.Join(home, ".cache", "medic", "kube-"+KubeVersion)
	}
	for _, b := range []string{"kube-apiserver", "etcd"} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			return "", fmt.Errorf("control plane binaries not found: %w", err)
		}
		if fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("control plane binary %s is not executable", filepath.Join(dir, b))
		}
	}
	return dir, nil
}

// startEnv starts etcd and kube-apiserver, retrying once if a port picked
// as free was taken in between.
func startEnv(bin string) (*Env, error) {
	rbac, err := LoadRBAC("")
	if err != nil {
		return nil, err
	}
	var errs []error
	for range 3 {
		env, err := startOnce(bin, rbac)
		if err == nil {
			return env, nil
		}
		errs = append(errs, err)
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func startOnce(bin string, rbac *RBAC) (_ *Env, err error) {
	begin := time.Now()
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm" // etcd's data dir in memory
	}
	removeStale(base)
	dir, err := os.MkdirTemp(base, "medic-kubetest-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	env := &Env{Dir: dir, Namespace: Namespace, ServiceAccount: rbac.ServiceAccount}
	env.MedicUser = fmt.Sprintf("system:serviceaccount:%s:%s", Namespace, rbac.ServiceAccount)
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]

	etcd := &proc{name: "etcd", log: filepath.Join(dir, "etcd.log")}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	err = etcd.start(filepath.Join(bin, "etcd"),
		"--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return nil, err
	}
	env.procs = append(env.procs, etcd)
	if err := waitHTTP(etcdURL+"/health", nil, 30*time.Second, etcd); err != nil {
		return nil, err
	}

	adminToken, medicToken := randHex(16), randHex(16)
	tokens := fmt.Sprintf("%s,admin,admin-uid,system:masters\n%s,%s,medic-uid,\"system:serviceaccounts,system:serviceaccounts:%s\"\n",
		adminToken, medicToken, env.MedicUser, Namespace)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	if err := writeRSAKey(filepath.Join(dir, "sa.key")); err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	api := &proc{name: "kube-apiserver", log: filepath.Join(dir, "kube-apiserver.log")}
	err = api.start(filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir="+certDir,
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--disable-admission-plugins=ServiceAccount",
		"--service-cluster-ip-range=10.0.0.0/24",
		"--endpoint-reconciler-type=none")
	if err != nil {
		return nil, err
	}
	env.procs = append(env.procs, api)

	host := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	caFile := filepath.Join(certDir, "apiserver.crt")
	if err := waitFile(caFile, 60*time.Second, api); err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("apiserver certificate: %w", err)
	}
	env.Admin = &rest.Config{Host: host, BearerToken: adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		QPS: 100, Burst: 200, UserAgent: "medic-kubetest-admin"}
	env.Medic = &rest.Config{Host: host, BearerToken: medicToken, TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		QPS: 100, Burst: 200, UserAgent: "medic-kubetest"}
	hc, err := rest.HTTPClientFor(env.Admin)
	if err != nil {
		return nil, fmt.Errorf("http client: %w", err)
	}
	if err := waitHTTP(host+"/readyz", hc, 60*time.Second, api, etcd); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(env.Admin)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rbac.Apply(ctx, cs, Namespace); err != nil {
		return nil, err
	}
	env.StartupTime = time.Since(begin)
	return env, nil
}

// Stop terminates the processes (SIGTERM, then SIGKILL after 5 s) and
// removes Dir. It is safe to call more than once.
func (e *Env) Stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		e.procs[i].stop()
	}
	e.procs = nil
	if e.Dir != "" {
		os.RemoveAll(e.Dir)
		e.Dir = ""
	}
}

// proc is one control-plane process with its output in a log file.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (p *proc) start(path string, args ...string) error {
	f, err := os.Create(p.log)
	if err != nil {
		return fmt.Errorf("%s log: %w", p.name, err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Die with the test binary even if it is killed before cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := spawn(cmd); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return nil
}

// exited reports an error with the log's tail if the process has exited.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail())
	default:
		return nil
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	const n = 3000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func (p *proc) stop() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

var (
	spawnOnce sync.Once
	spawnReqs = make(chan spawnReq)
)

type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

// spawn starts cmd from one OS thread that lives as long as the process:
// Pdeathsig fires when the thread that forked the child exits, so starting
// children from an arbitrary (possibly short-lived) thread could kill
// them early.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread stays until exit
			for r := range spawnReqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, err: make(chan error, 1)}
	spawnReqs <- r
	return <-r.err
}

// removeStale deletes directories of earlier runs whose test process is gone.
func removeStale(base string) {
	if base == "" {
		base = os.TempDir()
	}
	dirs, _ := filepath.Glob(filepath.Join(base, "medic-kubetest-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// waitHTTP polls url until it answers 200, a process exits, or timeout.
func waitHTTP(url string, hc *http.Client, timeout time.Duration, procs ...*proc) error {
	if hc == nil {
		hc = &http.Client{}
	}
	hc = &http.Client{Transport: hc.Transport, Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if err := p.exited(); err != nil {
				return err
			}
		}
		resp, err := hc.Get(url)
		if err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body[:n]))
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	var logs strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&logs, "\n--- %s log tail:\n%s", p.name, p.tail())
	}
	return fmt.Errorf("%s not ready after %s (last: %s)%s", url, timeout, last, logs.String())
}

func waitFile(path string, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := p.exited(); err != nil {
			return err
		}
		if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not write %s within %s:\n%s", p.name, path, timeout, p.tail())
}

// freePorts asks the kernel for n free loopback ports. They are free when
// returned; another process may take one before it is used (startEnv retries).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
