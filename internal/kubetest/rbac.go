package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// ModulePath is medic's Go module; RepoRoot looks for its go.mod.
const ModulePath = "github.com/medic-sidecar/medic"

// RBAC is the ServiceAccount and RBAC objects of deploy/base, as listed in
// its kustomization.yaml resources.
type RBAC struct {
	ServiceAccount      string
	Roles               []*rbacv1.Role
	RoleBindings        []*rbacv1.RoleBinding
	ClusterRoles        []*rbacv1.ClusterRole
	ClusterRoleBindings []*rbacv1.ClusterRoleBinding
}

// RepoRoot walks up from the working directory to medic's go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module "+ModulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", ModulePath)
		}
		dir = parent
	}
}

// LoadRBAC reads the ServiceAccount, Roles, ClusterRoles and their bindings
// from the resources listed in base/kustomization.yaml ("" = the
// repository's deploy/base). It fails unless there is exactly one
// ServiceAccount and some binding names it.
func LoadRBAC(base string) (*RBAC, error) {
	if base == "" {
		root, err := RepoRoot()
		if err != nil {
			return nil, err
		}
		base = filepath.Join(root, "deploy", "base")
	}
	kb, err := os.ReadFile(filepath.Join(base, "kustomization.yaml"))
	if err != nil {
		return nil, fmt.Errorf("deploy base: %w", err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(kb, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", base, err)
	}
	out := &RBAC{}
	var sas []string
	for _, r := range k.Resources {
		path := filepath.Join(base, r)
		docs, err := readDocs(path)
		if err != nil {
			return nil, err
		}
		for i, doc := range docs {
			obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
			}
			switch o := obj.(type) {
			case *corev1.ServiceAccount:
				sas = append(sas, o.Name)
			case *rbacv1.Role:
				out.Roles = append(out.Roles, o)
			case *rbacv1.RoleBinding:
				out.RoleBindings = append(out.RoleBindings, o)
			case *rbacv1.ClusterRole:
				out.ClusterRoles = append(out.ClusterRoles, o)
			case *rbacv1.ClusterRoleBinding:
				out.ClusterRoleBindings = append(out.ClusterRoleBindings, o)
			}
		}
	}
	if len(sas) != 1 {
		return nil, fmt.Errorf("%s: want exactly one ServiceAccount, found %d %v", base, len(sas), sas)
	}
	out.ServiceAccount = sas[0]
	bound := false
	for _, s := range out.subjects() {
		if s.Kind == rbacv1.ServiceAccountKind && s.Name == out.ServiceAccount {
			bound = true
		}
	}
	if !bound {
		return nil, fmt.Errorf("%s: no RoleBinding or ClusterRoleBinding names ServiceAccount %q", base, out.ServiceAccount)
	}
	return out, nil
}

func (r *RBAC) subjects() []rbacv1.Subject {
	var s []rbacv1.Subject
	for _, b := range r.RoleBindings {
		s = append(s, b.Subjects...)
	}
	for _, b := range r.ClusterRoleBindings {
		s = append(s, b.Subjects...)
	}
	return s
}

// Apply creates ns, the ServiceAccount, the Roles and RoleBindings in ns,
// and the cluster-scoped objects; ServiceAccount subjects without a
// namespace are bound in ns (as kustomize's namespace: would do).
func (r *RBAC) Apply(ctx context.Context, cs kubernetes.Interface, ns string) error {
	create := func(what string, err error) error {
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s: %w", what, err)
		}
		return nil
	}
	var errs []error
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	errs = append(errs, create("namespace "+ns, err))
	_, err = cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: r.ServiceAccount}}, metav1.CreateOptions{})
	errs = append(errs, create("serviceaccount "+r.ServiceAccount, err))
	fix := func(subjects []rbacv1.Subject) []rbacv1.Subject {
		out := make([]rbacv1.Subject, len(subjects))
		for i, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Namespace == "" {
				s.Namespace = ns
			}
			out[i] = s
		}
		return out
	}
	for _, o := range r.Roles {
		o = o.DeepCopy()
		o.Namespace = ns
		_, err := cs.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, create("role "+o.Name, err))
	}
	for _, o := range r.RoleBindings {
		o = o.DeepCopy()
		o.Namespace = ns
		o.Subjects = fix(o.Subjects)
		_, err := cs.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, create("rolebinding "+o.Name, err))
	}
	for _, o := range r.ClusterRoles {
		_, err := cs.RbacV1().ClusterRoles().Create(ctx, o.DeepCopy(), metav1.CreateOptions{})
		errs = append(errs, create("clusterrole "+o.Name, err))
	}
	for _, o := range r.ClusterRoleBindings {
		o = o.DeepCopy()
		o.Subjects = fix(o.Subjects)
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		errs = append(errs, create("clusterrolebinding "+o.Name, err))
	}
	return errors.Join(errs...)
}

// readDocs splits a multi-document YAML file, skipping empty documents.
func readDocs(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("deploy base: %w", err)
	}
	defer f.Close()
	rd := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(strings.TrimSpace(stripComments(string(doc)))) > 0 {
			docs = append(docs, doc)
		}
	}
}

func stripComments(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") && t != "---" {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
