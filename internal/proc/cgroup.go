package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// A process belongs to a Kubernetes pod through its cgroup: every runtime
// puts a container in a cgroup whose parent is the pod's, named after the
// pod UID:
//
//	cgroupfs driver:  /kubepods/burstable/pod<uid>/<container id>
//	systemd driver:   /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
//
// in /proc/PID/cgroup as "ID:controllers:path" lines (cgroup v1: one per
// hierarchy; v2: the single line "0::path"). Paths are shown relative to
// the reader's cgroup namespace: in a container with its own cgroup
// namespace (the default with cgroup v2) medic's own path reads "/", a
// sibling container of the same pod "/../<id>", and a process of another
// pod "/../../pod<uid>/<id>".

// ErrPodUnknown is wrapped when medic cannot tell which processes belong to
// its pod.
var ErrPodUnknown = errors.New("cannot tell which processes are in medic's pod")

// podComponent matches a cgroup path component naming a pod:
// "pod<uid>" or "kubepods-<qos>-pod<uid_with_underscores>.slice".
var podComponent = regexp.MustCompile(`(?:^|-)pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12})(?:\.slice)?$`)

// cgroupPrefer lists the cgroup v1 hierarchies that the kubelet arranges
// per pod, in order of preference. Without any of them (pure cgroup v2)
// the unified hierarchy ("0::") is used.
var cgroupPrefer = []string{"pids", "memory", "cpu", "cpuacct", "cpuset", "blkio", "devices", "freezer"}

// Cgroups maps a hierarchy's controller list ("pids", "cpu,cpuacct", "" for
// cgroup v2) to the process's path in it.
type Cgroups map[string]string

// ParseCgroups parses the content of /proc/PID/cgroup.
func ParseCgroups(b []byte) (Cgroups, error) {
	out := Cgroups{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			return nil, fmt.Errorf("cgroup line %d: malformed %q", n, truncate([]byte(line)))
		}
		out[parts[1]] = parts[2]
	}
	if len(out) == 0 {
		return nil, errors.New("no cgroup lines")
	}
	return out, nil
}

// ReadCgroups reads root/PID/cgroup; pid may be "self".
func ReadCgroups(root, pid string) (Cgroups, error) {
	b, err := os.ReadFile(filepath.Join(root, pid, "cgroup"))
	if err != nil {
		return nil, err
	}
	c, err := ParseCgroups(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(root, pid, "cgroup"), err)
	}
	return c, nil
}

// hierarchy picks the key to compare processes by: a v1 controller the
// kubelet sets up per pod, else the v2 unified hierarchy.
func (c Cgroups) hierarchy() (string, bool) {
	for _, want := range cgroupPrefer {
		for k := range c {
			for _, ctl := range strings.Split(k, ",") {
				if ctl == want {
					return k, true
				}
			}
		}
	}
	_, ok := c[""]
	return "", ok
}

// PodUID returns the pod UID named in the path (dashes, lower case), or "".
func PodUID(cgroupPath string) string {
	for _, comp := range strings.Split(cgroupPath, "/") {
		if m := podComponent.FindStringSubmatch(comp); m != nil {
			return strings.ToLower(strings.ReplaceAll(m[1], "_", "-"))
		}
	}
	return ""
}

// Pod is the set of processes in one pod, as seen from a reference process
// (medic itself) in that pod.
type Pod struct {
	// UID is the pod UID (Downward API or cgroup path); "" when only the
	// cgroup namespace structure is known.
	UID string
	// hier is the hierarchy compared; dir the pod's cgroup in it as seen by
	// the reader, "" in a cgroup namespace (the pod is then the parent of
	// the namespace's root).
	hier string
	dir  string
	// envUID says the UID came from the Downward API (POD_UID): then sibling
	// cgroups of a namespaced container are known to be the pod's.
	envUID bool
}

// String names the pod for messages.
func (p *Pod) String() string {
	switch {
	case p.UID != "" && p.dir != "":
		return fmt.Sprintf("pod %s (cgroup %s)", p.UID, p.dir)
	case p.UID != "":
		return fmt.Sprintf("pod %s", p.UID)
	}
	return "medic's container"
}

// OwnPod works out the pod of process pid (medic: "self") under root.
// envUID is the pod UID from the Downward API (POD_UID, metadata.uid), or
// "". It returns nil, nil when the process is plainly not in a Kubernetes
// pod (no pod in its cgroup path, no cgroup namespace, no envUID), and an
// error wrapping ErrPodUnknown when it should be but the pod cannot be
// placed (envUID set but the path names no pod or another one).
func OwnPod(root, pid, envUID string) (*Pod, error) {
	envUID = strings.ToLower(strings.TrimSpace(envUID))
	cg, err := ReadCgroups(root, pid)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPodUnknown, err)
	}
	hier, ok := cg.hierarchy()
	if !ok {
		return nil, fmt.Errorf("%w: no usable cgroup hierarchy in %s/%s/cgroup", ErrPodUnknown, root, pid)
	}
	own := cg[hier]
	if uid := PodUID(own); uid != "" {
		if envUID != "" && envUID != uid {
			return nil, fmt.Errorf("%w: POD_UID is %s but %s/%s/cgroup places medic in pod %s", ErrPodUnknown, envUID, root, pid, uid)
		}
		// The pod's directory: the path up to its pod component.
		comps := strings.Split(own, "/")
		for i, c := range comps {
			if podComponent.MatchString(c) {
				return &Pod{UID: uid, hier: hier, dir: strings.Join(comps[:i+1], "/"), envUID: envUID != ""}, nil
			}
		}
	}
	if own == "/" {
		// A cgroup namespace: the container is the namespace's root and the
		// pod its parent, which only the Downward API can vouch for.
		return &Pod{UID: envUID, hier: hier, envUID: envUID != ""}, nil
	}
	if envUID != "" {
		return nil, fmt.Errorf("%w: POD_UID is %s but cgroup %q (%s/%s/cgroup) names no pod", ErrPodUnknown, envUID, own, root, pid)
	}
	return nil, nil
}

// Contains reports whether process pid (under root) is in the pod. When it
// is not, or cannot be told, why says so. A process whose cgroup cannot be
// read is not in the pod.
func (p *Pod) Contains(root string, pid int) (in bool, why string) {
	cg, err := ReadCgroups(root, fmt.Sprint(pid))
	if err != nil {
		return false, fmt.Sprintf("cgroup unreadable: %v", err)
	}
	cp, ok := cg[p.hier]
	if !ok {
		return false, fmt.Sprintf("not in cgroup hierarchy %q", p.hier)
	}
	if p.dir != "" {
		if cp == p.dir || strings.HasPrefix(cp, p.dir+"/") {
			return true, ""
		}
		if uid := PodUID(cp); uid != "" {
			return false, "in pod " + uid
		}
		return false, "in cgroup " + cp
	}
	// Namespaced view: "/..." is medic's own container, "/../X/..." a
	// sibling container (the pod's only if the Downward API says medic is
	// in a pod), "/../../..." is outside the pod.
	rel := strings.TrimSuffix(cp, "/")
	switch {
	case rel != "/.." && !strings.HasPrefix(rel, "/../"):
		return true, ""
	case strings.HasPrefix(rel, "/../") && !strings.HasPrefix(rel, "/../../") && rel != "/../..":
		if p.envUID {
			return true, ""
		}
		return false, fmt.Sprintf("in another container (cgroup %s) and medic's pod is unknown: set POD_UID from the Downward API (metadata.uid)", cp)
	}
	return false, "outside medic's pod (cgroup " + cp + ")"
}

// Scopes of a process selector: which processes a signal may reach.
const (
	// ScopePod: only processes in medic's own pod (by /proc/PID/cgroup); an
	// error when medic cannot place its pod.
	ScopePod = "pod"
	// ScopeAny: every process the procfs root shows.
	ScopeAny = "any"
)

// EnvPodUID names medic's pod UID (Downward API: metadata.uid). It confirms
// the pod found in /proc/self/cgroup, and is required when medic runs in
// its own cgroup namespace (cgroup v2), whose view hides the UID.
const EnvPodUID = "POD_UID"

// ValidScope reports whether s is a scope ("" is: ScopePod in a pod,
// ScopeAny outside one).
func ValidScope(s string) bool { return s == "" || s == ScopePod || s == ScopeAny }

// InScope restricts sel to the pod of process self (medic: "self") under
// root unless scope is ScopeAny. With scope "" it is ScopePod when medic
// is in a pod and ScopeAny when it plainly is not; a pod that should be
// there but cannot be placed is an error, never ScopeAny. podUID is
// POD_UID's value or "".
func InScope(root, self, podUID, scope string, sel Selector) (Selector, error) {
	if scope == ScopeAny {
		return sel, nil
	}
	if err := VerifyRoot(root); err != nil {
		return sel, err
	}
	pod, err := OwnPod(root, self, podUID)
	switch {
	case err != nil:
		return sel, fmt.Errorf("scope %s: %w (set %s from the Downward API, or scope: %s)", ScopePod, err, EnvPodUID, ScopeAny)
	case pod == nil && scope == ScopePod:
		return sel, fmt.Errorf("scope %s: medic is not in a pod (no pod in %s/%s/cgroup, %s unset)", ScopePod, root, self, EnvPodUID)
	}
	sel.Pod = pod
	return sel, nil
}
