package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/medic-sidecar/medic/internal/kubetest"
)

// TestE2EKubernetes runs `medic run --kubeconfig` against a real
// kube-apiserver with medic's RBAC from deploy/base: the pod's
// medic.io/pause annotation holds the ladder, and every step lands as an
// events.k8s.io Event on medic's pod.
func TestE2EKubernetes(t *testing.T) {
	env := kubetest.Start(t)
	ctx := context.Background()
	admin := env.AdminClient(t)
	podName := fmt.Sprintf("medic-e2e-%d", time.Now().UnixNano()%1_000_000)
	pod, err := admin.CoreV1().Pods(env.Namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Annotations: map[string]string{"medic.io/pause": "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "spire-agent:test"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A kubeconfig for medic's own (RBAC-limited) identity.
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: env.Medic.Host, CertificateAuthorityData: env.Medic.CAData}
	kc.AuthInfos["medic"] = &clientcmdapi.AuthInfo{Token: env.Medic.BearerToken}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "medic", Namespace: env.Namespace}
	kc.CurrentContext = "test"
	kcPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kcPath); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", podName)
	t.Setenv("POD_NAMESPACE", env.Namespace)
	t.Setenv("NODE_NAME", "node-1")

	e := newE2E(t, "", "", "restart-agent")
	e.start("--kubeconfig", kcPath)
	restarts := e.agent.Syncs().Starts
	e.fail()
	e.eventually("paused by the annotation", 30*time.Second, func() bool {
		return e.metric(`medic_remediations_suppressed_total{action="restart-agent",reason="paused"}`) == 1
	})
	if e.agent.Syncs().Starts != restarts {
		t.Fatal("restarted while the pod is annotated medic.io/pause=true")
	}
	patch := []byte(`{"metadata":{"annotations":{"medic.io/pause":null}}}`)
	if _, err := admin.CoreV1().Pods(env.Namespace).Patch(ctx, podName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitIncident("resolved", 30*time.Second)
	if e.agent.Syncs().Starts == restarts {
		t.Fatal("not restarted after the annotation was removed")
	}
	want := []string{"IncidentOpened", "RemediationSuppressed", "RemediationStarted", "RemediationSucceeded", "IncidentResolved"}
	var got map[string]string
	e.eventually("Events on the pod", 30*time.Second, func() bool {
		list, err := admin.EventsV1().Events(env.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		got = map[string]string{}
		for _, ev := range list.Items {
			if ev.Regarding.Name == podName && ev.Regarding.UID == pod.UID {
				got[ev.Reason] = ev.Note
			}
		}
		for _, r := range want {
			if _, ok := got[r]; !ok {
				return false
			}
		}
		return true
	})
	if note := got["RemediationStarted"]; !strings.Contains(note, "SPIREAgentNotSyncing") || !strings.Contains(note, "restart-agent") || !strings.Contains(note, "1/2") {
		t.Fatalf("RemediationStarted note lacks alert/action/attempt: %q", note)
	}
}
