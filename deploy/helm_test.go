package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	sigyaml "sigs.k8s.io/yaml"

	"github.com/medic-sidecar/medic/internal/kubetest"
	"github.com/medic-sidecar/medic/supervisor/config"
)

const chartDir = "helm/medic"

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load %s: %v", chartDir, err)
	}
	return c
}

// render renders the chart in-process as `helm template` does (values
// coalesced with values.yaml and checked against values.schema.json).
func render(t *testing.T, ns string, vals map[string]any) ([]*unstructured.Unstructured, error) {
	t.Helper()
	c := loadChart(t)
	rv, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{Name: "medic", Namespace: ns, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(c, rv)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []*unstructured.Unstructured
	for _, n := range names {
		if !strings.HasSuffix(n, ".yaml") {
			continue
		}
		objs, err := decodeYAML(files[n])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		out = append(out, objs...)
	}
	return out, nil
}

func mustRender(t *testing.T, ns string, vals map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := render(t, ns, vals)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func decodeYAML(s string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(s), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, os.ErrClosed) || err.Error() == "EOF" {
				return out, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// allOn enables every optional object.
func allOn(extra map[string]any) map[string]any {
	v := map[string]any{
		"podMonitor":     map[string]any{"enabled": true, "labels": map[string]any{"release": "kube-prometheus-stack"}},
		"prometheusRule": map[string]any{"enabled": true},
		"dashboard":      map[string]any{"enabled": dashboardShipped()},
	}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// dashboardShipped reports whether deploy/monitoring/dashboard.json exists
// (the alerting slice's; the chart copies it).
func dashboardShipped() bool {
	_, err := os.Stat("monitoring/dashboard.json")
	return err == nil
}

func TestHelmChartLint(t *testing.T) {
	for _, vals := range []map[string]any{nil, allOn(nil), allOn(map[string]any{"config": map[string]any{"example": "kubearmor-relay"}})} {
		l := lint.All(chartDir, vals, "spire-server", false)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("lint %v: %s", vals, m)
			} else {
				t.Logf("lint: %s", m)
			}
		}
	}
}

func TestHelmChartSchemaRejectsBadValues(t *testing.T) {
	for name, vals := range map[string]map[string]any{
		"unknown example":  {"config": map[string]any{"example": "nginx"}},
		"unknown key":      {"podMonitr": map[string]any{"enabled": true}},
		"bad SA name":      {"serviceAccount": map[string]any{"name": "Spire_Agent"}},
		"enabled not bool": {"prometheusRule": map[string]any{"enabled": "yes"}},
		"fleet url":        {"fleet": map[string]any{"prometheusURL": "prometheus:9090"}},
		"fleet share":      {"fleet": map[string]any{"maxShare": 1.5}},
	} {
		if _, err := render(t, "spire-server", vals); err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("%s: rendered (%v), want a schema error", name, err)
		}
	}
}

// One value turns the SPIRE example's fleet-outage guard on: the source
// gets the URL (the env variable still overrides it) and the share its
// threshold; without it the source is disabled and the guard inactive.
func TestHelmChartFleetAttributionIsOneValue(t *testing.T) {
	t.Setenv("MEDIC_FLEET_PROMETHEUS_URL", "")
	os.Unsetenv("MEDIC_FLEET_PROMETHEUS_URL")
	os.Unsetenv("MEDIC_FLEET_MAX_SHARE")
	guard := func(c *config.Config) config.Guard {
		for _, ag := range c.Guards(nil) {
			for _, g := range ag.Guards {
				if ag.Action == "restart-agent" && g.Guard == "fleet-outage" {
					return g
				}
			}
		}
		t.Fatal("restart-agent has no fleet-outage guard")
		return config.Guard{}
	}
	off, err := config.Parse([]byte(configOf(t, mustRender(t, "spire-server", nil))))
	if err != nil {
		t.Fatal(err)
	}
	if g := guard(off); g.Active || off.Sources["fleet"].Enabled() {
		t.Errorf("fleet guard active by default: %+v", g)
	}
	on, err := config.Parse([]byte(configOf(t, mustRender(t, "spire-server", map[string]any{
		"fleet": map[string]any{"prometheusURL": "http://prometheus-operated.monitoring:9090", "maxShare": 0.25}}))))
	if err != nil {
		t.Fatal(err)
	}
	g := guard(on)
	if !g.Active || on.Sources["fleet"].Prometheus.URL != "http://prometheus-operated.monitoring:9090" || !strings.Contains(g.Detail, "< 0.25") {
		t.Errorf("fleet.prometheusURL did not turn the guard on: %+v", g)
	}
}

// ruleSet is a Role's rules as "group/resource:verb" strings.
func ruleSet(t *testing.T, objs []*unstructured.Unstructured) map[string]bool {
	t.Helper()
	roles := find(objs, "Role")
	if len(roles) != 1 {
		t.Fatalf("%d Roles", len(roles))
	}
	set := map[string]bool{}
	for _, r := range convert[rbacv1.Role](t, roles[0]).Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					set[g+"/"+res+":"+v] = true
				}
			}
		}
	}
	return set
}

func configOf(t *testing.T, objs []*unstructured.Unstructured) string {
	t.Helper()
	cms := find(objs, "ConfigMap")
	for _, cm := range cms {
		if s, ok, _ := unstructured.NestedString(cm.Object, "data", "medic.yaml"); ok {
			return s
		}
	}
	t.Fatal("no ConfigMap with medic.yaml")
	return ""
}

func TestHelmChartConfigAndLeastPrivilege(t *testing.T) {
	always := []string{"events.k8s.io/events:create", "events.k8s.io/events:patch", "/pods:get", "/pods:list", "/pods:watch"}
	cases := []struct {
		name  string
		vals  map[string]any
		file  string   // the shipped example the ConfigMap must hold
		extra []string // rules beyond always
	}{
		{name: "spire-agent example (fleet limit)", file: "files/spire-agent.yaml",
			extra: []string{"coordination.k8s.io/leases:get", "coordination.k8s.io/leases:create", "coordination.k8s.io/leases:update"}},
		{name: "kubearmor-relay example", vals: map[string]any{"config": map[string]any{"example": "kubearmor-relay"}}, file: "files/kubearmor-relay.yaml"},
		{name: "inline: pod eviction and rollout", vals: map[string]any{"config": map[string]any{"inline": `
actions:
  evict-me: {restart: {mode: pod, evict: true}}
  roll: {restart: {mode: rollout}}
  kill: {restart: {mode: signal, process: x}}
`}}, extra: []string{"/pods:delete", "/pods/eviction:create", "apps/replicasets:get",
			"apps/deployments:get", "apps/deployments:patch", "apps/daemonsets:get", "apps/daemonsets:patch", "apps/statefulsets:get", "apps/statefulsets:patch"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs := mustRender(t, "spire-server", c.vals)
			got := ruleSet(t, objs)
			want := map[string]bool{}
			for _, r := range append(slices.Clone(always), c.extra...) {
				want[r] = true
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Role rules\n got %v\nwant %v", keys(got), keys(want))
			}
			text := configOf(t, objs)
			if c.file != "" {
				b, err := os.ReadFile(filepath.Join(chartDir, c.file))
				if err != nil {
					t.Fatal(err)
				}
				if strings.TrimSpace(text) != strings.TrimSpace(string(b)) {
					t.Errorf("ConfigMap medic.yaml is not %s", c.file)
				}
				cfg, err := config.Parse([]byte(text))
				if err == nil {
					err = cfg.Validate()
				}
				if err != nil {
					t.Errorf("%s: %v", c.file, err)
				}
			}
			rb := convert[rbacv1.RoleBinding](t, find(objs, "RoleBinding")[0])
			if rb.Subjects[0].Name != "spire-agent" || rb.Subjects[0].Namespace != "spire-server" {
				t.Errorf("RoleBinding subjects %+v", rb.Subjects)
			}
		})
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestHelmChartCopiesStayTrue: the chart carries copies of files it cannot
// reach outside its directory; they must not drift.
func TestHelmChartCopiesStayTrue(t *testing.T) {
	same := map[string]string{
		"files/prometheusrule.yaml":  "monitoring/prometheusrule.yaml",
		"files/kubearmor-relay.yaml": "../examples/kubearmor-relay.yaml",
	}
	if dashboardShipped() {
		same["files/dashboard.json"] = "monitoring/dashboard.json"
	} else if _, err := os.Stat(filepath.Join(chartDir, "files/dashboard.json")); err == nil {
		t.Error("the chart ships files/dashboard.json but deploy/monitoring/dashboard.json does not exist")
	}
	for copy, orig := range same {
		a, err1 := os.ReadFile(filepath.Join(chartDir, copy))
		b, err2 := os.ReadFile(orig)
		if err1 != nil || err2 != nil {
			t.Fatalf("%v %v", err1, err2)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("deploy/%s/%s differs from deploy/%s: cp deploy/%s deploy/%s/%s", chartDir, copy, orig, orig, chartDir, copy)
		}
	}
	// The SPIRE chart's config differs from examples/spire-agent.yaml in
	// ports and paths only: its actions, rules and alerting are the same.
	var chartCfg, example map[string]any
	for p, v := range map[string]*map[string]any{filepath.Join(chartDir, "files/spire-agent.yaml"): &chartCfg, "../examples/spire-agent.yaml": &example} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := sigyaml.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	for _, k := range []string{"actions", "rules", "alerting", "sources", "evaluationInterval", "stateDir"} {
		if !reflect.DeepEqual(chartCfg[k], example[k]) {
			t.Errorf("%s: %q differs from examples/spire-agent.yaml's", filepath.Join(chartDir, "files/spire-agent.yaml"), k)
		}
	}
	if !dashboardShipped() {
		_, err := render(t, "spire-server", map[string]any{"dashboard": map[string]any{"enabled": true}})
		if err == nil || !strings.Contains(err.Error(), "dashboard.json") {
			t.Errorf("dashboard enabled without a dashboard: %v", err)
		}
	}
}

// TestHelmChartMonitoringObjects decodes the PodMonitor and PrometheusRule
// strictly into prometheus-operator's own Go types (unknown fields fail).
func TestHelmChartMonitoringObjects(t *testing.T) {
	objs := mustRender(t, "spire-server", allOn(nil))
	strict := func(u *unstructured.Unstructured, into any) {
		t.Helper()
		b, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Fatalf("%s: %v", u.GetKind(), err)
		}
	}
	var pm monitoringv1.PodMonitor
	strict(find(objs, "PodMonitor")[0], &pm)
	if ep := pm.Spec.PodMetricsEndpoints; len(ep) != 1 || ep[0].Port == nil || *ep[0].Port != "medic-metrics" {
		t.Errorf("PodMonitor endpoints %+v", ep)
	}
	if pm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("PodMonitor labels %v", pm.Labels)
	}
	var pr monitoringv1.PrometheusRule
	strict(find(objs, "PrometheusRule")[0], &pr)
	var orig monitoringv1.PrometheusRule
	b, _ := os.ReadFile("monitoring/prometheusrule.yaml")
	if err := sigyaml.UnmarshalStrict(b, &orig); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(pr.Spec, orig.Spec) {
		t.Error("the chart's PrometheusRule spec differs from deploy/monitoring/prometheusrule.yaml")
	}
	if dashboardShipped() {
		cm := convert[corev1.ConfigMap](t, find(objs, "ConfigMap")[1])
		if cm.Labels["grafana_dashboard"] != "1" || !json.Valid([]byte(cm.Data["medic.json"])) {
			t.Errorf("dashboard ConfigMap %s: labels %v, valid JSON %v", cm.Name, cm.Labels, json.Valid([]byte(cm.Data["medic.json"])))
		}
	}
}

// minimalCRDs installs minimal structural CRDs named as prometheus-operator's
// PodMonitor and PrometheusRule (spec preserved as is; the real schemas are
// checked by TestHelmChartMonitoringObjects with the operator's Go types), so
// the API server can dry-run those objects.
func minimalCRDs(t *testing.T, env *kubetest.Env) {
	t.Helper()
	dc, err := dynamic.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	crdGVR := apiextv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
	preserve := true
	for _, k := range []struct{ kind, plural string }{{"PodMonitor", "podmonitors"}, {"PrometheusRule", "prometheusrules"}} {
		crd := &apiextv1.CustomResourceDefinition{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
			ObjectMeta: metav1.ObjectMeta{Name: k.plural + ".monitoring.coreos.com"},
			Spec: apiextv1.CustomResourceDefinitionSpec{
				Group: "monitoring.coreos.com",
				Names: apiextv1.CustomResourceDefinitionNames{Kind: k.kind, ListKind: k.kind + "List", Plural: k.plural, Singular: strings.ToLower(k.kind)},
				Scope: apiextv1.NamespaceScoped,
				Versions: []apiextv1.CustomResourceDefinitionVersion{{
					Name: "v1", Served: true, Storage: true,
					Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
						Type: "object",
						Properties: map[string]apiextv1.JSONSchemaProps{
							"spec": {Type: "object", XPreserveUnknownFields: &preserve},
						},
						Required: []string{"spec"},
					}},
				}},
			},
		}
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dc.Resource(crdGVR).Create(context.Background(), &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// Wait until the API server serves them.
	cs := env.AdminClient(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		rl, err := cs.Discovery().ServerResourcesForGroupVersion("monitoring.coreos.com/v1")
		if err == nil && len(rl.APIResources) >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRDs not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestHelmChartServerSideDryRun(t *testing.T) {
	env := kubetest.Start(t)
	minimalCRDs(t, env)
	cs := env.AdminClient(t)
	for _, c := range []struct {
		ns   string
		vals map[string]any
	}{
		{"spire-server", allOn(map[string]any{"serviceAccount": map[string]any{"name": "spire-agent", "create": true}})},
		{"kubearmor", allOn(map[string]any{"config": map[string]any{"example": "kubearmor-relay"}, "serviceAccount": map[string]any{"name": "kubearmor-relay", "create": true}})},
	} {
		t.Run(c.ns, func(t *testing.T) {
			ensureNamespace(t, cs, c.ns)
			objs := mustRender(t, c.ns, c.vals)
			kinds := map[string]bool{}
			for name, err := range dryRunAll(t, env, objs) {
				kinds[strings.Split(name, "/")[0]] = true
				if err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
			for _, k := range []string{"ConfigMap", "ServiceAccount", "Role", "RoleBinding", "PodMonitor", "PrometheusRule"} {
				if !kinds[k] {
					t.Errorf("no %s rendered", k)
				}
			}
		})
	}
}

// TestHelmChartRoleIsEnoughAndNoMore binds the rendered Role for real and
// asks the API server (SubjectAccessReview) what the agent's
// ServiceAccount may do.
func TestHelmChartRoleIsEnoughAndNoMore(t *testing.T) {
	env := kubetest.Start(t)
	cs := env.AdminClient(t)
	const ns = "medic-helm-rbac"
	ensureNamespace(t, cs, ns)
	objs := mustRender(t, ns, nil) // the SPIRE example
	dc, err := dynamic.NewForConfig(env.Admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Role", "RoleBinding"} {
		o := find(objs, kind)[0]
		res := rbacv1.SchemeGroupVersion.WithResource(strings.ToLower(kind) + "s")
		if _, err := dc.Resource(res).Namespace(ns).Create(context.Background(), o, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	user := "system:serviceaccount:" + ns + ":spire-agent"
	check := func(group, resource, verb, sub string) bool {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               user,
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: ns, Group: group, Resource: resource, Subresource: sub, Verb: verb},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	allowed := [][4]string{
		{"events.k8s.io", "events", "create", ""}, {"events.k8s.io", "events", "patch", ""},
		{"", "pods", "get", ""}, {"", "pods", "watch", ""}, {"", "pods", "list", ""},
		{"coordination.k8s.io", "leases", "update", ""}, {"coordination.k8s.io", "leases", "create", ""},
	}
	denied := [][4]string{
		{"", "pods", "delete", ""}, {"", "pods", "eviction", "create"}, {"", "secrets", "get", ""},
		{"apps", "daemonsets", "patch", ""}, {"", "events", "create", ""}, {"", "pods", "create", ""},
	}
	for _, a := range allowed {
		if !check(a[0], a[1], a[2], a[3]) {
			t.Errorf("%s %s/%s denied; medic's SPIRE config needs it", a[2], a[0], a[1])
		}
	}
	for _, d := range denied {
		if d[3] != "" {
			d[1], d[2], d[3] = "pods", d[3], d[2]
		}
		if check(d[0], d[1], d[2], d[3]) {
			t.Errorf("%s %s/%s %s allowed; the SPIRE config does not need it", d[2], d[0], d[1], d[3])
		}
	}
}

// spireAgentValues reads deploy/helm/spire-values.yaml's spire-agent subtree.
type spireAgentValues struct {
	Telemetry struct {
		Prometheus struct {
			Enabled bool  `json:"enabled"`
			Port    int32 `json:"port"`
		} `json:"prometheus"`
	} `json:"telemetry"`
	ExtraContainers   []corev1.Container   `json:"extraContainers"`
	ExtraVolumes      []corev1.Volume      `json:"extraVolumes"`
	ExtraVolumeMounts []corev1.VolumeMount `json:"extraVolumeMounts"`
}

// spireAgentDaemonSet merges spire-values.yaml into the stand-in of the
// official chart's agent DaemonSet the way the chart's template does.
func spireAgentDaemonSet(t *testing.T) (*appsv1.DaemonSet, spireAgentValues) {
	t.Helper()
	b, err := os.ReadFile("helm/spire-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		SpireAgent spireAgentValues `json:"spire-agent"`
	}
	if err := sigyaml.UnmarshalStrict(b, &top); err != nil {
		t.Fatalf("spire-values.yaml: %v", err)
	}
	v := top.SpireAgent
	b, err = os.ReadFile("testdata/spire-chart-agent-daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := sigyaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatal(err)
	}
	spec := &ds.Spec.Template.Spec
	agent := &spec.Containers[0]
	if v.Telemetry.Prometheus.Enabled {
		agent.Ports = append(agent.Ports, corev1.ContainerPort{Name: "prom", ContainerPort: v.Telemetry.Prometheus.Port})
	}
	agent.VolumeMounts = append(agent.VolumeMounts, v.ExtraVolumeMounts...)
	spec.Containers = append(spec.Containers, v.ExtraContainers...)
	spec.Volumes = append(spec.Volumes, v.ExtraVolumes...)
	return &ds, v
}

func TestSpireValuesFitTheAgentPod(t *testing.T) {
	ds, v := spireAgentDaemonSet(t)
	spec := ds.Spec.Template.Spec
	if !spec.HostPID || !spec.HostNetwork {
		t.Fatal("the stand-in is not hostPID + hostNetwork")
	}
	if !v.Telemetry.Prometheus.Enabled || v.Telemetry.Prometheus.Port != 9988 {
		t.Error("spire-values.yaml must turn on the agent's telemetry.prometheus on 9988 (medic scrapes it)")
	}
	medic := container(t, spec, "medic")

	// hostNetwork: every container port is a node port; none may clash.
	seen := map[int32]string{}
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if other, ok := seen[p.ContainerPort]; ok {
				t.Errorf("port %d of %s clashes with %s", p.ContainerPort, c.Name, other)
			}
			seen[p.ContainerPort] = c.Name
		}
	}
	cfgText, err := os.ReadFile(filepath.Join(chartDir, "files/spire-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(cfgText)
	if err != nil {
		t.Fatal(err)
	}
	// medic's full surface stays on loopback; its metrics port is the one
	// the container declares as medic-metrics.
	if !strings.HasPrefix(cfg.Listen, "127.0.0.1:") {
		t.Errorf("listen %q: in a hostNetwork pod it must be loopback", cfg.Listen)
	}
	listenPort := strings.TrimPrefix(cfg.Listen, "127.0.0.1:")
	// A node port only for metricsListen (read-only), named medic-metrics
	// for the PodMonitor (deploy/monitoring) and fleet attribution, clear
	// of the agent's 9982 and 9988.
	if ml := metricsListen(t, cfgText); ml == "" {
		t.Errorf("files/spire-agent.yaml has no metricsListen: the cluster Prometheus cannot scrape medic in the SPIRE pod")
	} else if strings.HasSuffix(ml, ":9982") || strings.HasSuffix(ml, ":9988") || strings.HasSuffix(ml, ":"+listenPort) {
		t.Errorf("metricsListen %q clashes with the agent's ports or listen", ml)
	} else if len(medic.Ports) != 1 || medic.Ports[0].Name != "medic-metrics" || !strings.HasSuffix(ml, fmt.Sprintf(":%d", medic.Ports[0].ContainerPort)) {
		t.Errorf("medic's ports %+v vs metricsListen %q", medic.Ports, ml)
	}
	for _, p := range []*corev1.Probe{medic.LivenessProbe, medic.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "127.0.0.1" || p.HTTPGet.Port.String() != listenPort {
			t.Errorf("probe %+v: want httpGet host 127.0.0.1 port %s", p, listenPort)
		}
	}
	env := map[string]string{}
	for _, e := range medic.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_UID"] != "metadata.uid" || env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("Downward API env %v", env)
	}
	// The config map the pod mounts is the one the medic chart renders.
	for _, vol := range v.ExtraVolumes {
		if vol.ConfigMap != nil && vol.ConfigMap.Name != configOfName(t) {
			t.Errorf("volume %s mounts ConfigMap %q; the chart renders %q", vol.Name, vol.ConfigMap.Name, configOfName(t))
		}
	}
	// medic sees the Workload API socket where its config looks.
	mounted := false
	for _, m := range medic.VolumeMounts {
		if m.Name == "spire-agent-socket-dir" && strings.Contains(string(cfgText), m.MountPath+"/spire-agent.sock") {
			mounted = true
		}
	}
	if !mounted {
		t.Error("medic does not mount the chart's socket dir where its config expects spire-agent.sock")
	}
}

func metricsListen(t *testing.T, cfgText []byte) string {
	t.Helper()
	var m map[string]any
	if err := sigyaml.Unmarshal(cfgText, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m["metricsListen"].(string)
	return s
}

func configOfName(t *testing.T) string {
	t.Helper()
	for _, cm := range find(mustRender(t, "spire-server", nil), "ConfigMap") {
		return cm.GetName()
	}
	return ""
}

func TestSpireValuesServerSideDryRun(t *testing.T) {
	env := kubetest.Start(t)
	cs := env.AdminClient(t)
	ds, _ := spireAgentDaemonSet(t)
	ensureNamespace(t, cs, ds.Namespace)
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ds)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("apps/v1")
	u.SetKind("DaemonSet")
	unstructured.RemoveNestedField(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "spec", "template", "metadata", "creationTimestamp")
	objs := append(mustRender(t, ds.Namespace, nil), u)
	for name, err := range dryRunAll(t, env, objs) {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else {
			t.Logf("%s: accepted", name)
		}
	}
}

// kubearmorPostRendered runs deploy/helm/kubearmor-relay's kustomization
// (what post-render.sh runs) over the stand-in of the KubeArmor chart's
// relay objects, in-process with krusty.
func kubearmorPostRendered(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	dir := t.TempDir()
	for src, dst := range map[string]string{
		"testdata/kubearmor-chart-relay.yaml":     "all.yaml",
		"helm/kubearmor-relay/kustomization.yaml": "kustomization.yaml",
		"helm/kubearmor-relay/medic-sidecar.yaml": "medic-sidecar.yaml",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return build(t, dir)
}

func TestKubeArmorPostRendererAddsMedic(t *testing.T) {
	objs := kubearmorPostRendered(t)
	if len(objs) != 3 {
		t.Fatalf("%d objects, want the chart's 3", len(objs))
	}
	_, tmpl := podTemplate(t, objs)
	relay := container(t, tmpl.Spec, "kubearmor-relay-server")
	if relay.Image != "kubearmor/kubearmor-relay-server:stable" {
		t.Errorf("relay container changed: %+v", relay)
	}
	medic := container(t, tmpl.Spec, "medic")
	sc := medic.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 {
		t.Errorf("medic beside the relay needs no privileges: %+v", sc)
	}
	cfg, err := config.Parse(mustRead(t, filepath.Join(chartDir, "files/kubearmor-relay.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cfg.Listen, ":9555") || strings.HasPrefix(cfg.Listen, "127.") || medic.LivenessProbe.HTTPGet.Port.IntValue() != 9555 {
		t.Errorf("not hostNetwork: medic listens on the pod IP (%q) and the kubelet probes port 9555", cfg.Listen)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKubeArmorPostRendererServerSideDryRun(t *testing.T) {
	env := kubetest.Start(t)
	ensureNamespace(t, env.AdminClient(t), "kubearmor")
	vals := map[string]any{"config": map[string]any{"example": "kubearmor-relay"}, "serviceAccount": map[string]any{"name": "kubearmor-relay"}}
	objs := append(kubearmorPostRendered(t), mustRender(t, "kubearmor", vals)...)
	for name, err := range dryRunAll(t, env, objs) {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
