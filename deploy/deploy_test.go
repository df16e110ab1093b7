// Package deploy_test builds the kustomize overlays in-process (krusty, the
// library behind `kubectl kustomize`), checks what medic's sidecar gets,
// and applies every object to a real API server with server-side dry run.
package deploy_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/medic-sidecar/medic/internal/kubetest"
	_ "github.com/medic-sidecar/medic/supervisor/builtin" // every probe and action kind
	"github.com/medic-sidecar/medic/supervisor/config"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

var overlays = []string{"spire-agent", "kubearmor-relay"}

// build runs kustomize on an overlay and returns its objects.
func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var out []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &v
}

// podTemplate returns the overlay's single workload's pod template.
func podTemplate(t *testing.T, objs []*unstructured.Unstructured) (string, corev1.PodTemplateSpec) {
	t.Helper()
	if ds := find(objs, "DaemonSet"); len(ds) == 1 {
		return "DaemonSet", convert[appsv1.DaemonSet](t, ds[0]).Spec.Template
	}
	if d := find(objs, "Deployment"); len(d) == 1 {
		return "Deployment", convert[appsv1.Deployment](t, d[0]).Spec.Template
	}
	t.Fatal("no single DaemonSet or Deployment")
	return "", corev1.PodTemplateSpec{}
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func TestOverlaysGiveMedicWhatItNeedsAndNoMore(t *testing.T) {
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			_, tmpl := podTemplate(t, objs)
			spec := tmpl.Spec
			medic := container(t, spec, "medic")

			// Identity: the pod's ServiceAccount is the one the Role is bound to.
			sas := find(objs, "ServiceAccount")
			if len(sas) != 1 || spec.ServiceAccountName != sas[0].GetName() {
				t.Fatalf("pod serviceAccountName %q, ServiceAccounts %d", spec.ServiceAccountName, len(sas))
			}
			rb := convert[rbacv1.RoleBinding](t, find(objs, "RoleBinding")[0])
			if rb.RoleRef.Name != "medic" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != spec.ServiceAccountName {
				t.Errorf("RoleBinding %+v does not bind medic's Role to the pod's ServiceAccount", rb)
			}
			// Downward API.
			env := map[string]string{}
			for _, e := range medic.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					env[e.Name] = e.ValueFrom.FieldRef.FieldPath
				}
			}
			want := map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "NODE_NAME": "spec.nodeName", "POD_UID": "metadata.uid"}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("env %s = %q, want fieldRef %s", k, env[k], v)
				}
			}
			// Probes on medic's port.
			if p := medic.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
				t.Errorf("liveness probe %+v", p)
			}
			if p := medic.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" {
				t.Errorf("readiness probe %+v", p)
			}
			if len(medic.Ports) != 1 || medic.Ports[0].ContainerPort != 9555 {
				t.Errorf("ports %+v", medic.Ports)
			}
			// Hardening.
			sc := medic.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
				sc.Privileged != nil && *sc.Privileged {
				t.Fatalf("medic securityContext %+v", sc)
			}
			var added []string
			for _, c := range sc.Capabilities.Add {
				added = append(added, string(c))
			}
			switch dir {
			case "spire-agent":
				// signal restarts (KILL) and socket destroy (NET_ADMIN).
				if !slices.Equal(added, []string{"KILL", "NET_ADMIN"}) {
					t.Errorf("capabilities added %v, want [KILL NET_ADMIN]", added)
				}
				if spec.ShareProcessNamespace == nil || !*spec.ShareProcessNamespace {
					t.Error("shareProcessNamespace is not true")
				}
				agent := container(t, spec, "spire-agent")
				lp := agent.LivenessProbe
				if lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/livez/agent" || lp.HTTPGet.Port.IntValue() != 9555 {
					t.Errorf("agent livenessProbe %+v, want medic's /livez/agent on 9555", lp)
				}
				mounted := func(c corev1.Container) bool {
					return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "spire-agent-socket" })
				}
				if !mounted(agent) || !mounted(medic) {
					t.Error("the agent socket volume is not shared by both containers")
				}
			case "kubearmor-relay":
				if len(added) != 0 {
					t.Errorf("capabilities added %v, want none", added)
				}
				if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
					t.Error("medic may run as root")
				}
				relay := container(t, spec, "kubearmor-relay-server")
				if lp := relay.LivenessProbe; lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/livez/agent" {
					t.Errorf("relay livenessProbe %+v", lp)
				}
			}
			// The config volume names the generated (hashed) ConfigMap.
			cms := find(objs, "ConfigMap")
			var medicCM string
			for _, cm := range cms {
				if strings.HasPrefix(cm.GetName(), "medic-config-") {
					medicCM = cm.GetName()
					data, _, _ := unstructured.NestedString(cm.Object, "data", "medic.yaml")
					if !strings.Contains(data, "rules:") {
						t.Errorf("medic.yaml is the base placeholder, not the overlay's")
					}
				}
			}
			if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool {
				return v.ConfigMap != nil && v.ConfigMap.Name == medicCM && medicCM != ""
			}) {
				t.Errorf("no volume for ConfigMap %q", medicCM)
			}
		})
	}
}

// dryRunAll creates every object with DryRun=All; it returns the errors by object.
func dryRunAll(t *testing.T, env *kubetest.Env, objs []*unstructured.Unstructured) map[string]error {
	t.Helper()
	dc, err := dynamic.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	cs := env.AdminClient(t)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	out := map[string]error{}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		var ri dynamic.ResourceInterface = dc.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dc.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		_, err = ri.Create(context.Background(), o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
		out[o.GetKind()+"/"+o.GetName()] = err
	}
	return out
}

func ensureNamespace(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestOverlayConfigsAreValid loads the medic.yaml each overlay ships (from
// the built ConfigMap) with medic's own strict loader and validation.
func TestOverlayConfigsAreValid(t *testing.T) {
	for _, dir := range overlays {
		for _, cm := range find(build(t, dir), "ConfigMap") {
			data, ok, _ := unstructured.NestedString(cm.Object, "data", "medic.yaml")
			if !ok {
				continue
			}
			c, err := config.Parse([]byte(data))
			if err == nil {
				err = c.Validate()
			}
			if err != nil {
				t.Errorf("%s: %s medic.yaml: %v", dir, cm.GetName(), err)
			}
		}
	}
	b, err := os.ReadFile("base/medic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := config.Parse(b); err != nil || c.Validate() != nil {
		t.Errorf("base/medic.yaml: %v", err)
	}
}

func TestOverlaysServerSideDryRun(t *testing.T) {
	env := kubetest.Start(t)
	cs := env.AdminClient(t)
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			ensureNamespace(t, cs, objs[0].GetNamespace())
			for name, err := range dryRunAll(t, env, objs) {
				if err != nil {
					t.Errorf("%s: %v", name, err)
				} else {
					t.Logf("%s: accepted", name)
				}
			}
		})
	}
}

func TestSpireOverlayCannotAlsoUseHostPID(t *testing.T) {
	// The SPIRE agent's k8s workload attestor wants hostPID, which the API
	// server refuses together with shareProcessNamespace (see
	// deploy/README.md): this test keeps that claim honest.
	env := kubetest.Start(t)
	objs := build(t, "spire-agent")
	ensureNamespace(t, env.AdminClient(t), "spire")
	ds := find(objs, "DaemonSet")[0]
	if err := unstructured.SetNestedField(ds.Object, true, "spec", "template", "spec", "hostPID"); err != nil {
		t.Fatal(err)
	}
	err := dryRunAll(t, env, []*unstructured.Unstructured{ds})["DaemonSet/spire-agent"]
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "ShareProcessNamespace and HostPID cannot both be enabled") {
		t.Fatalf("hostPID + shareProcessNamespace: %v, want invalid", err)
	}
	t.Logf("refused as expected: %v", err)
}

// TestSPIREOverlayShipsTheExample: the SPIRE overlay's medic.yaml is
// examples/spire-agent.yaml (kustomize cannot load files from outside the
// overlay, so it is a copy; this keeps the copy true).
func TestSPIREOverlayShipsTheExample(t *testing.T) {
	want, err := os.ReadFile("../examples/spire-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("spire-agent/medic.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/spire-agent/medic.yaml differs from examples/spire-agent.yaml: cp examples/spire-agent.yaml deploy/spire-agent/medic.yaml")
	}
}

// medic listens on loopback by default (docs/configuration.md). A pod
// without hostNetwork is probed by the kubelet over the pod IP, so its
// config must set listen: ":9555" explicitly, on the port the probes name.
func TestOverlaysWithoutHostNetworkListenOnThePodIP(t *testing.T) {
	for _, dir := range overlays {
		objs := build(t, dir)
		_, tmpl := podTemplate(t, objs)
		if tmpl.Spec.HostNetwork {
			continue
		}
		n := 0
		for _, cm := range find(objs, "ConfigMap") {
			data, ok, _ := unstructured.NestedString(cm.Object, "data", "medic.yaml")
			if !ok {
				continue
			}
			n++
			c, err := config.Parse([]byte(data))
			if err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
			if c.Listen != ":9555" {
				t.Errorf("%s: medic.yaml listen %q; a pod without hostNetwork needs \":9555\" (the default is loopback)", dir, c.Listen)
			}
		}
		if n == 0 {
			t.Errorf("%s: no medic.yaml ConfigMap", dir)
		}
	}
}
