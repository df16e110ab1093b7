package nodee2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/medic-sidecar/medic/internal/kubetest"
)

// Environment variables.
const (
	// EnvNode names node.json, written by scripts/node-e2e.sh.
	EnvNode = "MEDIC_NODE_E2E"
	// EnvRequire set to 1 turns a missing node into a failure.
	EnvRequire = "MEDIC_REQUIRE_NODE"
)

// Namespace is where the tests' pods run, with deploy/base's RBAC bound to
// its medic ServiceAccount.
const Namespace = "medic-node-e2e"

// Ports inside the test pods.
const (
	medicPort   = 9555 // medic's listen (":9555", as the overlays set it)
	agentPort   = 9988 // the SPIRE-like agent's metrics, on loopback as SPIRE's telemetry
	controlPort = 9989 // the agent's test-only control endpoints, on the pod IP
)

// nodeInfo is node.json.
type nodeInfo struct {
	Kubeconfig string `json:"kubeconfig"`
	Node       string `json:"node"`
	APIHost    string `json:"apiHost"`
	APIPort    string `json:"apiPort"`
	CAFile     string `json:"caFile"`
	StateDir   string `json:"stateDir"`
	Images     struct {
		Medic      string `json:"medic"`
		SpireAgent string `json:"spireAgent"`
		Relay      string `json:"relay"`
		Pause      string `json:"pause"`
	} `json:"images"`
}

// env is the node under test, shared by the package's tests.
type env struct {
	nodeInfo
	cs             kubernetes.Interface
	serviceAccount string
}

var shared struct {
	once sync.Once
	env  *env
	err  error
}

// setup returns the node, creating the namespace, medic's ServiceAccount
// and RBAC (from deploy/base) and the kube-root-ca.crt ConfigMap on first
// use. Without MEDIC_NODE_E2E the test skips.
func setup(t *testing.T) *env {
	t.Helper()
	path := os.Getenv(EnvNode)
	if path == "" {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s is not set (%s=1 requires a node): run scripts/node-e2e.sh", EnvNode, EnvRequire)
		}
		t.Skipf("no node: run `sudo bash scripts/node-e2e.sh` (it sets %s)", EnvNode)
	}
	shared.once.Do(func() { shared.env, shared.err = newEnv(path) })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.env
}

func newEnv(path string) (*env, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	e := &env{}
	if err := json.Unmarshal(b, &e.nodeInfo); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", e.Kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 50, 100
	if e.cs, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	rbac, err := kubetest.LoadRBAC("")
	if err != nil {
		return nil, err
	}
	e.serviceAccount = rbac.ServiceAccount
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rbac.Apply(ctx, e.cs, Namespace); err != nil {
		return nil, err
	}
	// What kube-controller-manager's root-CA publisher would create: the
	// ServiceAccount admission plugin's projected volume reads it.
	ca, err := os.ReadFile(e.CAFile)
	if err != nil {
		return nil, err
	}
	_, err = e.cs.CoreV1().ConfigMaps(Namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": string(ca)},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	return e, nil
}

// --- the pods -----------------------------------------------------------------

// shippedSidecar reads the medic container and its volumes from
// deploy/base/sidecar/sidecar.yaml, as the kustomize overlays merge it.
func shippedSidecar(t *testing.T) (corev1.Container, []corev1.Volume) {
	t.Helper()
	var d appsv1.Deployment
	readYAML(t, "deploy/base/sidecar/sidecar.yaml", &d)
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "medic" {
			return c, d.Spec.Template.Spec.Volumes
		}
	}
	t.Fatal("deploy/base/sidecar/sidecar.yaml has no medic container")
	return corev1.Container{}, nil
}

// withOverlayPatch applies the medic container of a strategic-merge patch
// file (e.g. deploy/spire-agent/medic-privileges.yaml) to c, as kustomize does.
func withOverlayPatch(t *testing.T, c corev1.Container, file string) corev1.Container {
	t.Helper()
	var ds appsv1.DaemonSet
	readYAML(t, file, &ds)
	for _, p := range ds.Spec.Template.Spec.Containers {
		if p.Name != c.Name {
			continue
		}
		orig, _ := json.Marshal(c)
		patch, _ := json.Marshal(p)
		merged, err := strategicpatch.StrategicMergePatch(orig, patch, corev1.Container{})
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		var out corev1.Container
		if err := json.Unmarshal(merged, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	t.Fatalf("%s patches no %s container", file, c.Name)
	return c
}

func readYAML(t *testing.T, rel string, into any) {
	t.Helper()
	root, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// podOpts describes one test pod: the SPIRE-like agent and medic.
type podOpts struct {
	name string
	// medicConfig is medic.yaml.
	medicConfig string
	// medic is medic's container; zero: as shipped in deploy/base/sidecar.
	medic *corev1.Container
	// agentSC is the agent container's security context; nil: as in
	// deploy/spire-agent/daemonset.yaml (root, read-only root filesystem,
	// no privilege escalation).
	agentSC *corev1.SecurityContext
	// agentLiveness points the agent's livenessProbe at medic's /livez/agent.
	agentLiveness         bool
	shareProcessNamespace bool
	hostPID               bool
	annotations           map[string]string
	// noMedic runs the agent alone (a bystander).
	noMedic bool
	// agent replaces the SPIRE-like agent container (e.g. the relay).
	agent *corev1.Container
}

// Liveness probe of the agent in the probe-mode pods. The restart action's
// hold is derived from the same numbers (failureThreshold × period + period).
const (
	livenessPeriod    = 2
	livenessThreshold = 2
	// livenessDelay keeps the restarted agent's first probes after the
	// hold (the kubelet may kill the agent after only threshold-1 periods).
	livenessDelay = 6
)

func (e *env) agentContainer(o podOpts) corev1.Container {
	sc := o.agentSC
	if sc == nil {
		sc = &corev1.SecurityContext{RunAsUser: ptr.To[int64](0), ReadOnlyRootFilesystem: ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false)}
	}
	c := corev1.Container{
		Name: "spire-agent", Image: e.Images.SpireAgent, ImagePullPolicy: corev1.PullNever,
		Args: []string{"-listen", fmt.Sprintf("127.0.0.1:%d", agentPort), "-control", fmt.Sprintf(":%d", controlPort),
			"-interval", "1s", "-host", o.name},
		SecurityContext: sc,
	}
	if o.agentLiveness {
		c.LivenessProbe = &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/livez/agent", Port: intstr.FromInt32(medicPort)}},
			InitialDelaySeconds: livenessDelay, PeriodSeconds: livenessPeriod, FailureThreshold: livenessThreshold, TimeoutSeconds: 1,
		}
	}
	return c
}

// createPod creates medic's ConfigMap and the pod on the node, waits until
// every container is ready, and deletes both at the end of the test.
func (e *env) createPod(t *testing.T, o podOpts) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	spec := corev1.PodSpec{
		NodeName:                      e.Node,
		ServiceAccountName:            e.serviceAccount,
		ShareProcessNamespace:         ptr.To(o.shareProcessNamespace),
		HostPID:                       o.hostPID,
		TerminationGracePeriodSeconds: ptr.To[int64](5),
		Containers:                    []corev1.Container{e.agentContainer(o)},
	}
	if o.agent != nil {
		spec.Containers = []corev1.Container{*o.agent}
	}
	if !o.noMedic {
		shipped, vols := shippedSidecar(t)
		m := shipped
		if o.medic != nil {
			m = *o.medic
		}
		m.Image, m.ImagePullPolicy = e.Images.Medic, corev1.PullNever
		// No kube-proxy on this node: the API server's address itself
		// (container env overrides the kubelet's service variables).
		m.Env = append(m.Env,
			corev1.EnvVar{Name: "KUBERNETES_SERVICE_HOST", Value: e.APIHost},
			corev1.EnvVar{Name: "KUBERNETES_SERVICE_PORT", Value: e.APIPort})
		cmName := o.name + "-medic"
		for i := range vols {
			if vols[i].ConfigMap != nil && vols[i].ConfigMap.Name == "medic-config" {
				vols[i].ConfigMap.Name = cmName
			}
		}
		_, err := e.cs.CoreV1().ConfigMaps(Namespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: cmName}, Data: map[string]string{"medic.yaml": o.medicConfig},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = e.cs.CoreV1().ConfigMaps(Namespace).Delete(context.Background(), cmName, metav1.DeleteOptions{})
		})
		spec.Containers = append(spec.Containers, m)
		spec.Volumes = vols
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: o.name, Namespace: Namespace, Annotations: o.annotations,
			Labels: map[string]string{"app.kubernetes.io/name": "medic-node-e2e"}},
		Spec: spec,
	}
	begin := time.Now()
	pod, err := e.cs.CoreV1().Pods(Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.deletePod(t, pod) })
	pod = e.waitPod(t, o.name, "all containers ready", 90*time.Second, func(p *corev1.Pod) bool {
		if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != len(spec.Containers) {
			return false
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready {
				return false
			}
		}
		return true
	})
	t.Logf("pod %s: all %d containers ready %s after create (IP %s)", o.name, len(spec.Containers),
		time.Since(begin).Round(100*time.Millisecond), pod.Status.PodIP)
	return pod
}

// deletePod deletes the pod and waits until the kubelet has stopped it and
// the API server forgot it; on failure it logs the containers' logs first.
func (e *env) deletePod(t *testing.T, pod *corev1.Pod) {
	if t.Failed() {
		e.dumpLogs(t, pod)
	}
	ctx := context.Background()
	err := e.cs.CoreV1().Pods(Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)})
	if apierrors.IsNotFound(err) {
		return
	}
	if err != nil {
		t.Errorf("delete pod %s: %v", pod.Name, err)
		return
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := e.cs.CoreV1().Pods(Namespace).Get(ctx, pod.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Errorf("pod %s still there 60s after delete", pod.Name)
}

// dumpLogs logs every container log the kubelet wrote for the pod
// (podLogsDir of the node's kubelet).
func (e *env) dumpLogs(t *testing.T, pod *corev1.Pod) {
	dir := filepath.Join(e.StateDir, "pod-logs", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		t.Logf("--- %s:\n%s", strings.TrimPrefix(f, dir+"/"), b)
	}
}

// waitPod polls the pod until ok holds.
func (e *env) waitPod(t *testing.T, name, what string, timeout time.Duration, ok func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *corev1.Pod
	for time.Now().Before(deadline) {
		p, err := e.cs.CoreV1().Pods(Namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = p
			if ok(p) {
				return p
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last != nil {
		b, _ := json.MarshalIndent(last.Status, "", "  ")
		t.Logf("pod %s status:\n%s", name, b)
	}
	t.Fatalf("pod %s: %s: not within %s", name, what, timeout)
	return nil
}

func (e *env) getPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := e.cs.CoreV1().Pods(Namespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func containerStatus(p *corev1.Pod, name string) corev1.ContainerStatus {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == name {
			return cs
		}
	}
	return corev1.ContainerStatus{}
}

func restarts(p *corev1.Pod, container string) int32 {
	return containerStatus(p, container).RestartCount
}

// --- talking to the pods ----------------------------------------------------

var httpc = &http.Client{Timeout: 5 * time.Second}

// setAgentMode switches the SPIRE-like agent's upstream condition through
// its control endpoint on the pod IP (mode=failing&code=Unavailable, mode=healthy).
func setAgentMode(t *testing.T, pod *corev1.Pod, query string) {
	t.Helper()
	url := fmt.Sprintf("http://%s:%d/control/mode?%s", pod.Status.PodIP, controlPort, query)
	resp, err := httpc.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s %s", url, resp.Status, b)
	}
}

// agentSyncs is the agent's GET /control/syncs (the fields used here).
type agentSyncs struct {
	Starts int    `json:"starts"`
	Mode   string `json:"mode"`
}

func getAgentSyncs(t *testing.T, pod *corev1.Pod) agentSyncs {
	t.Helper()
	var s agentSyncs
	getJSON(t, fmt.Sprintf("http://%s:%d/control/syncs", pod.Status.PodIP, controlPort), &s)
	return s
}

// medicStatus is medic's /status (the fields used here).
type medicStatus struct {
	Paused bool `json:"paused"`
	Probes []struct {
		Name string  `json:"name"`
		Up   float64 `json:"up"`
	} `json:"probes"`
	PausedBy  string `json:"pausedBy"`
	StartedAt string `json:"startedAt"`
	Incidents []struct {
		ID       string `json:"id"`
		Alert    string `json:"alert"`
		State    string `json:"state"`
		FixedBy  string `json:"fixedBy"`
		Attempts []struct {
			Action  string `json:"action"`
			Attempt int    `json:"attempt"`
			Result  string `json:"result"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"attempts"`
	} `json:"incidents"`
	Budgets []struct {
		Action string `json:"action"`
		Max    int    `json:"max"`
		Used   int    `json:"used"`
	} `json:"budgets"`
}

func getStatus(t *testing.T, pod *corev1.Pod) medicStatus {
	t.Helper()
	var s medicStatus
	getJSON(t, fmt.Sprintf("http://%s:%d/status?format=json", pod.Status.PodIP, medicPort), &s)
	return s
}

// waitStatus polls medic's /status until ok holds; a /status that does
// not answer (medic restarting) is retried.
func waitStatus(t *testing.T, pod *corev1.Pod, what string, timeout time.Duration, ok func(medicStatus) bool) medicStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last medicStatus
	var lastErr error
	for time.Now().Before(deadline) {
		var s medicStatus
		err := tryJSON(fmt.Sprintf("http://%s:%d/status?format=json", pod.Status.PodIP, medicPort), &s)
		if err == nil {
			last = s
			if ok(s) {
				return s
			}
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("medic in %s: %s: not within %s (last error %v); last /status:\n%s", pod.Name, what, timeout, lastErr, b)
	return last
}

func getJSON(t *testing.T, url string, into any) {
	t.Helper()
	if err := tryJSON(url, into); err != nil {
		t.Fatal(err)
	}
}

func tryJSON(url string, into any) error {
	resp, err := httpc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// medicEvents lists the events.k8s.io/v1 Events medic wrote about the pod,
// oldest first.
func (e *env) medicEvents(t *testing.T, pod string) []eventsv1.Event {
	t.Helper()
	list, err := e.cs.EventsV1().Events(Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uid := e.getPod(t, pod).UID // not an earlier pod of the same name
	var out []eventsv1.Event
	for _, ev := range list.Items {
		if ev.Regarding.Name == pod && ev.Regarding.UID == uid && ev.ReportingController == "medic.io/medic" {
			out = append(out, ev)
		}
	}
	return out
}

// kubeletEvents lists the core/v1 Events the kubelet wrote about the pod.
func (e *env) kubeletEvents(t *testing.T, pod string) []corev1.Event {
	t.Helper()
	list, err := e.cs.CoreV1().Events(Namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uid := e.getPod(t, pod).UID
	var out []corev1.Event
	for _, ev := range list.Items {
		if ev.InvolvedObject.Name == pod && ev.InvolvedObject.UID == uid && ev.Source.Component == "kubelet" {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvents polls medic's Events about the pod until ok holds.
func (e *env) waitEvents(t *testing.T, pod, what string, timeout time.Duration, ok func([]eventsv1.Event) bool) []eventsv1.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var evs []eventsv1.Event
	for time.Now().Before(deadline) {
		evs = e.medicEvents(t, pod)
		if ok(evs) {
			return evs
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, ev := range evs {
		t.Logf("event %s %s: %s", ev.Type, ev.Reason, ev.Note)
	}
	t.Fatalf("pod %s: events: %s: not within %s", pod, what, timeout)
	return nil
}

// countReasons counts Events by reason (series included: a series of n
// counts n).
func countReasons(evs []eventsv1.Event) map[string]int {
	n := map[string]int{}
	for _, ev := range evs {
		c := 1
		if ev.Series != nil {
			c = int(ev.Series.Count)
		}
		n[ev.Reason] += c
	}
	return n
}

// --- the node's processes -----------------------------------------------------

// hostPID finds the host PID of a container's main process: the process
// whose cgroup path names the container ID (runc under containerd with the
// cgroupfs driver puts each container in .../pod<UID>/<container ID>).
func hostPID(t *testing.T, p *corev1.Pod, container string) int {
	t.Helper()
	id := containerStatus(p, container).ContainerID
	_, id, _ = strings.Cut(id, "://")
	if id == "" {
		t.Fatalf("pod %s: container %s has no ID", p.Name, container)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	best := 0
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		f, err := os.Open(filepath.Join(d, "cgroup"))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		match := false
		for sc.Scan() {
			if strings.HasSuffix(sc.Text(), "/"+id) {
				match = true
				break
			}
		}
		f.Close()
		if match && (best == 0 || pid < best) {
			best = pid // the container's first process has the lowest PID here
		}
	}
	if best == 0 {
		t.Fatalf("pod %s: no process of container %s (%s) found in /proc", p.Name, container, id)
	}
	return best
}

func killPID(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}
