package restart

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
	"github.com/medic-sidecar/medic/internal/clock"
	"github.com/medic-sidecar/medic/internal/kubeclient"
	"github.com/medic-sidecar/medic/internal/kubetest"
)

// Helpers shared by the pod and rollout tests. Objects are created by the
// admin; the actions run with the medic user, which deploy/base's Role
// authorizes — so these tests also prove the Role is enough.

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// build decodes nothing: it fills a Config like the YAML would (defaults
// then fields), validates it and builds the action through the registry.
func build(t *testing.T, env actions.Env, set func(c *Config)) actions.Action {
	t.Helper()
	c := defaults()
	set(c)
	if err := c.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	k, ok := actions.Lookup(Kind)
	if !ok {
		t.Fatal("restart kind not registered")
	}
	a, err := k.New(c, env)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return a
}

func kubeEnv(t *testing.T, ke *kubetest.Env, pod string) actions.Env {
	return actions.Env{
		Name:  "restart-test",
		Clock: clock.NewFake(epoch),
		Kube:  &actions.KubeEnv{Client: ke.MedicClient(t), Namespace: ke.Namespace, Pod: pod, Node: "node-a"},
	}
}

var podSpec = corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "example.invalid/agent:1"}}}

func createPod(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	if pod.Spec.Containers == nil {
		pod.Spec = *podSpec.DeepCopy()
	}
	got, err := cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
	t.Cleanup(func() { forceDelete(cs, ns, pod.Name) })
	return got
}

func forceDelete(cs kubernetes.Interface, ns, name string) {
	zero := int64(0)
	_ = cs.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

func getPod(t *testing.T, cs kubernetes.Interface, ns, name string) (*corev1.Pod, bool) {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return p, true
}

func run(a actions.Action, dry bool) (actions.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return a.Run(ctx, actions.Incident{ID: "i1", Alert: "AgentDown", Action: "restart-test", Attempt: 1, MaxAttempts: 3, DryRun: dry})
}

// unreachable is a clientset for a port nobody listens on.
func unreachable(t *testing.T) *kubeclient.Clientset {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cs, err := kubeclient.NewForConfig(&rest.Config{Host: "http://" + addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func wantPermanent(t *testing.T, err error, contains string) {
	t.Helper()
	if err == nil || !actions.IsPermanent(err) || !strings.Contains(err.Error(), contains) {
		t.Fatalf("err = %v (permanent %v), want a permanent error containing %q", err, actions.IsPermanent(err), contains)
	}
}

func TestKubeModesNeedTheAPI(t *testing.T) {
	for _, mode := range []string{ModePod, ModeRollout} {
		c := defaults()
		c.Mode = mode
		k, _ := actions.Lookup(Kind)
		_, err := k.New(c, actions.Env{Clock: clock.Real{}})
		if err == nil || !strings.Contains(err.Error(), "not running in a cluster") {
			t.Errorf("%s without Kube: %v", mode, err)
		}
		_, err = k.New(c, actions.Env{Kube: &actions.KubeEnv{Client: unreachable(t)}})
		if err == nil || !strings.Contains(err.Error(), "POD_NAME") {
			t.Errorf("%s without a pod: %v", mode, err)
		}
	}
}

func TestKubeModesValidate(t *testing.T) {
	for _, c := range []struct {
		set  func(c *Config)
		want []string
	}{
		{func(c *Config) { c.Mode, c.Namespace = ModePod, "ns" }, []string{"pod: must be set when namespace is"}},
		{func(c *Config) { c.Mode, c.WorkloadKind, c.WorkloadName = ModePod, "Deployment", "x" }, []string{"workloadKind: applies to mode rollout only"}},
		{func(c *Config) { c.Mode, c.WorkloadKind = ModeRollout, "Job" }, []string{"workloadKind: must be Deployment, DaemonSet or StatefulSet", "workloadName: workloadKind and workloadName go together"}},
		{func(c *Config) { c.Mode, c.WorkloadKind, c.WorkloadName, c.Pod = ModeRollout, "Deployment", "d", "p" }, []string{"pod: set either pod"}},
		{func(c *Config) { c.Mode, c.Evict = ModeRollout, true }, []string{"evict: applies to mode pod only"}},
		{func(c *Config) { c.Mode, c.Namespace = ModeRollout, "ns" }, []string{"namespace: needs pod or workloadKind/workloadName"}},
	} {
		cf := defaults()
		c.set(cf)
		err := cf.Validate()
		var msgs []string
		for _, e := range cfg.Flatten(err) {
			msgs = append(msgs, e.Error())
		}
		if len(msgs) != len(c.want) {
			t.Errorf("%+v: errors %q, want %q", cf, msgs, c.want)
			continue
		}
		for i, w := range c.want {
			if !strings.HasPrefix(msgs[i], w) {
				t.Errorf("error %q, want prefix %q", msgs[i], w)
			}
		}
	}
	ok := defaults()
	ok.Mode, ok.WorkloadKind, ok.WorkloadName = ModeRollout, KindDaemonSet, "spire-agent"
	if err := ok.Validate(); err != nil {
		t.Errorf("named workload: %v", err)
	}
}

func TestKubeErrorsAreRetryableWhenTransient(t *testing.T) {
	env := actions.Env{Clock: clock.NewFake(epoch), Kube: &actions.KubeEnv{Client: unreachable(t), Namespace: "ns", Pod: "p"}}
	for _, mode := range []string{ModePod, ModeRollout} {
		a := build(t, env, func(c *Config) { c.Mode = mode })
		_, err := run(a, false)
		if err == nil || actions.IsPermanent(err) {
			t.Errorf("%s with the API server unreachable: err %v (permanent %v), want retryable", mode, err, actions.IsPermanent(err))
		}
	}
	if actions.IsPermanent(apiError("x", apierrors.NewServiceUnavailable("etcd"))) {
		t.Error("503 is permanent")
	}
	if !actions.IsPermanent(apiError("x", apierrors.NewNotFound(corev1.Resource("pods"), "p"))) {
		t.Error("404 is retryable")
	}
}
