package kube_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/medic-sidecar/medic/internal/kubetest"
	"github.com/medic-sidecar/medic/supervisor/kube"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// newPod creates a minimal pod (admin) named name plus a random suffix
// (the package's tests share one API server and may run with -count=N) and
// removes it on cleanup.
func newPod(t *testing.T, env *kubetest.Env, name string, ann map[string]string) *corev1.Pod {
	t.Helper()
	admin := env.AdminClient(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name += "-" + hex.EncodeToString(b)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: env.Namespace, Annotations: ann},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "example.invalid/agent:1"}}},
	}
	created, err := admin.CoreV1().Pods(env.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		_ = admin.CoreV1().Pods(env.Namespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	return created
}

// eventually polls cond every 20ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s (last: %s)", what, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventsAbout lists the Events regarding pod (admin view).
func eventsAbout(t *testing.T, cs kubernetes.Interface, ns, pod string) []eventsv1.Event {
	t.Helper()
	l, err := cs.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "regarding.name=" + pod})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	return l.Items
}

func TestNewClientKubeconfigAndIdentity(t *testing.T) {
	env := kubetest.Start(t)
	self := newPod(t, env, "client-id", nil).Name
	path := writeKubeconfig(t, env.Medic)
	getenv := mapEnv(map[string]string{kube.EnvPodName: self, kube.EnvPodNamespace: env.Namespace, kube.EnvNodeName: "node-a"})
	c, reason, err := kube.NewClient(kube.Options{Kubeconfig: path, Getenv: getenv})
	if err != nil || c == nil {
		t.Fatalf("NewClient: %v (reason %q)", err, reason)
	}
	if c.Identity != (kube.Identity{Namespace: env.Namespace, Pod: self, Node: "node-a"}) {
		t.Errorf("identity = %+v", c.Identity)
	}
	if c.Source != "kubeconfig "+path {
		t.Errorf("source = %q", c.Source)
	}
	if c.Config.QPS != kube.DefaultQPS || c.Config.Timeout != kube.DefaultTimeout || c.Config.UserAgent != "medic" {
		t.Errorf("defaults not applied: qps %v timeout %v ua %q", c.Config.QPS, c.Config.Timeout, c.Config.UserAgent)
	}
	if _, err := c.Interface.Pods(env.Namespace).Get(context.Background(), self, metav1.GetOptions{}); err != nil {
		t.Fatalf("get own pod through the kubeconfig client: %v", err)
	}
	ae := c.ActionsEnv()
	if ae.Pod != self || ae.Namespace != env.Namespace || ae.Node != "node-a" || ae.Client == nil {
		t.Errorf("ActionsEnv = %+v", ae)
	}

	// Namespace falls back to the kubeconfig context's.
	c, _, err = kube.NewClient(kube.Options{Kubeconfig: path, Getenv: mapEnv(map[string]string{kube.EnvPodName: "p"})})
	if err != nil || c.Identity.Namespace != env.Namespace {
		t.Errorf("namespace from kubeconfig context: %+v, %v", c, err)
	}
}

func TestNewClientOutsideCluster(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	c, reason, err := kube.NewClient(kube.Options{})
	if c != nil || err != nil || !strings.Contains(reason, "not running in a Kubernetes pod") {
		t.Fatalf("outside a cluster: client %v, reason %q, err %v; want nil client, a reason, nil error", c, reason, err)
	}
	if a := (*kube.Client)(nil).ActionsEnv(); a != nil {
		t.Errorf("nil client ActionsEnv = %+v, want nil", a)
	}

	// A kubeconfig that was asked for but is broken is an error.
	_, _, err = kube.NewClient(kube.Options{Kubeconfig: filepath.Join(t.TempDir(), "missing")})
	if err == nil || !strings.Contains(err.Error(), "kubeconfig") {
		t.Fatalf("missing kubeconfig: err = %v", err)
	}
}

func TestIdentityValidate(t *testing.T) {
	err := kube.Identity{}.Validate()
	if err == nil || !strings.Contains(err.Error(), "POD_NAME and POD_NAMESPACE") {
		t.Errorf("empty identity: %v", err)
	}
	if err := (kube.Identity{Namespace: "n", Pod: "p"}).Validate(); err != nil {
		t.Errorf("complete identity: %v", err)
	}
}

func writeKubeconfig(t *testing.T, rc *rest.Config) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: rc.Host, CertificateAuthorityData: rc.CAData}
	cfg.AuthInfos["medic"] = &clientcmdapi.AuthInfo{Token: rc.BearerToken}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "medic", Namespace: kubetest.Namespace}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// patchAnnotations merge-patches pod annotations as an operator would
// (admin); a nil value removes the key.
func patchAnnotations(t *testing.T, cs kubernetes.Interface, ns, pod string, ann map[string]any) {
	t.Helper()
	var parts []string
	for k, v := range ann {
		if v == nil {
			parts = append(parts, fmt.Sprintf("%q:null", k))
		} else {
			parts = append(parts, fmt.Sprintf("%q:%q", k, v))
		}
	}
	patch := `{"metadata":{"annotations":{` + strings.Join(parts, ",") + `}}}`
	if _, err := cs.CoreV1().Pods(ns).Patch(context.Background(), pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("patch annotations: %v", err)
	}
}
