#!/usr/bin/env bash
# node-e2e.sh runs medic's node E2E tests (internal/nodee2e): real pods on a
# real kubelet v1.34 registered with the project's real kube-apiserver, with
# Debian's containerd 1.6 and runc, CNI bridge networking, and images built
# from this repository (medic, the SPIRE-like agent, the relay peer, a pause
# program). It needs root (Linux, cgroup v1 or v2) and the packages
# containerd, runc and containernetworking-plugins.
#
#   bash scripts/node-e2e.sh                 # set up, test, tear down; ends with "N passed, M failed"
#   bash scripts/node-e2e.sh --setup         # set up (idempotent) and leave the node running
#   bash scripts/node-e2e.sh --test [ARGS]   # run the tests against a running node (ARGS go to go test)
#   bash scripts/node-e2e.sh --teardown      # stop everything a run left behind
#
# Everything lives in $MEDIC_NODE_DIR (default /var/tmp/medic-node-e2e):
# pid files, logs, certificates, kubeconfigs, containerd's and the kubelet's
# roots. Binaries are cached by version outside the repository:
# scripts/kubelet-env.sh (kubelet) and scripts/kube-testenv.sh
# (kube-apiserver, etcd). Tear-down stops the processes by PID, kills the
# containers, unmounts every mount under the state directory (including the
# kubelet's bind mount of its root dir) and the pods' network namespaces,
# removes the kubelet's cgroups and the bridge, and deletes the directory.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${MEDIC_NODE_DIR:-/var/tmp/medic-node-e2e}
NODE=medic-node
BRIDGE=medic0
SUBNET=10.217.0.0/24
GW=10.217.0.1
CGROUP_ROOT=medic-node-e2e
PAUSE_IMAGE=medic.local/pause:e2e

log() { echo "node-e2e: $*" >&2; }
die() { log "$*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- processes --------------------------------------------------------------

# start NAME CMD...: runs CMD in its own session, output in logs/NAME.log,
# PID in pids/NAME.pid.
start() {
	local name=$1
	shift
	setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$STATE/pids/$name.pid"
}

alive() { [[ -f "$STATE/pids/$1.pid" ]] && kill -0 "$(cat "$STATE/pids/$1.pid")" 2>/dev/null; }

# stop NAME: SIGTERM the PID in pids/NAME.pid, SIGKILL after 10 s.
stop() {
	local f="$STATE/pids/$1.pid" pid
	[[ -f $f ]] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

tail_log() { log "--- $1 log tail:"; tail -n 40 "$STATE/logs/$1.log" >&2 || true; }

# wait_for SECONDS PROC DESCRIPTION CMD...: polls CMD until it succeeds,
# failing early if PROC died.
wait_for() {
	local secs=$1 proc=$2 what=$3
	shift 3
	local deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if ! alive "$proc"; then
			tail_log "$proc"
			die "$proc exited while waiting for $what"
		fi
		if (($(date +%s) > deadline)); then
			tail_log "$proc"
			die "$what not ready after ${secs}s"
		fi
		sleep 0.2
	done
}

free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port"
}

# --- tear-down --------------------------------------------------------------

teardown() {
	[[ -d $STATE ]] || return 0
	log "tearing down $STATE"
	local ctr=(ctr --address "$STATE/containerd/containerd.sock" -n k8s.io)
	stop kubelet
	if alive containerd; then
		# Kill every container (the pods' sandboxes included); the shims exit
		# with their tasks.
		local ids
		ids=$("${ctr[@]}" tasks ls -q 2>/dev/null || true)
		for id in $ids; do "${ctr[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true; done
		for _ in $(seq 50); do
			[[ -z $("${ctr[@]}" tasks ls -q 2>/dev/null | head -1) ]] && break
			sleep 0.1
		done
		for id in $ids; do "${ctr[@]}" tasks rm -f "$id" >/dev/null 2>&1 || true; done
	fi
	stop containerd
	# Shims outlive containerd by design; ours name our socket on their command line.
	local p
	for p in /proc/[0-9]*; do
		if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "-address $STATE/containerd/containerd.sock"; then
			kill -KILL "${p#/proc/}" 2>/dev/null || true
		fi
	done
	stop kube-apiserver
	stop etcd
	rm -rf /dev/shm/medic-node-e2e-etcd
	# Network namespaces of our pods: those containerd created during the run.
	if [[ -f $STATE/netns.before ]]; then
		local ns
		for ns in /run/netns/cni-*; do
			[[ -e $ns ]] || continue
			grep -qxF "$ns" "$STATE/netns.before" && continue
			umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
			rm -f "$ns"
		done
	fi
	# Every mount under the state directory, deepest first (the kubelet
	# bind-mounts its root dir onto itself; volumes, overlay rootfs and shm
	# mounts sit below it).
	local m
	for _ in 1 2 3; do
		mapfile -t mounts < <(awk -v d="$STATE" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
		[[ ${#mounts[@]} -eq 0 ]] && break
		for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
	done
	# The kubelet's cgroups (cgroupRoot), deepest first, in every hierarchy.
	local c
	for c in /sys/fs/cgroup/*/"$CGROUP_ROOT" /sys/fs/cgroup/"$CGROUP_ROOT"; do
		[[ -d $c ]] || continue
		find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
	done
	ip link del "$BRIDGE" 2>/dev/null || true
	# The kubelet's log symlinks into our pod-logs, and the fixed host paths
	# the kubelet, containerd and CNI use regardless of their root
	# directories, where this run created them.
	find /var/log/containers -maxdepth 1 -type l -lname "$STATE/*" -delete 2>/dev/null || true
	if [[ -f $STATE/created ]]; then
		local d
		while read -r d; do rm -rf "$d"; done <"$STATE/created"
	fi
	rm -rf "$STATE"
	[[ ! -e $STATE ]] || log "warning: could not remove $STATE"
}

# --- set-up -----------------------------------------------------------------

setup() {
	local t0 t
	t0=$(now)
	[[ $(id -u) == 0 ]] || die "needs root (containerd, kubelet, mounts, cgroups)"
	local c
	for c in containerd containerd-shim-runc-v2 runc ctr openssl curl jq ip go; do
		command -v "$c" >/dev/null || die "$c not found (apt-get install containerd runc containernetworking-plugins openssl curl jq iproute2)"
	done
	[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
		die "CNI plugins not found in /usr/lib/cni (apt-get install containernetworking-plugins)"

	teardown
	mkdir -p "$STATE"/{pids,logs,etc,bin,images,containerd,cni/net.d,kubelet,kubelet-certs,manifests}
	ls -d /run/netns/cni-* 2>/dev/null >"$STATE/netns.before" || true
	local d
	for d in /var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers /run/containerd /etc/cni /opt/containerd; do
		[[ -e $d ]] || echo "$d" >>"$STATE/created"
	done

	# Binaries cached by version.
	t=$(now)
	eval "$(bash "$ROOT/scripts/kubelet-env.sh" --print-env)"
	local kubelet_s
	kubelet_s=$(since "$t")
	# MEDIC_NODE_STANDALONE=1 (a debugging aid): no control plane; the
	# kubelet runs static pods from $STATE/manifests only.
	local standalone=${MEDIC_NODE_STANDALONE:-}
	t=$(now)
	[[ -n $standalone ]] || eval "$(bash "$ROOT/scripts/kube-testenv.sh" --print-env)"
	local cp_s
	cp_s=$(since "$t")

	# The test peers, static, and their images (`mkimage files`, from
	# internal/tools/mkimage: any binaries at any paths); medic's image from
	# scripts/image.sh (the same tool's default mode).
	t=$(now)
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$STATE/bin/" \
		./internal/demo/spireagent/cmd/spire-agent ./internal/testpeers/relay/cmd/relay \
		./internal/nodee2e/cmd/pause ./internal/tools/mkimage)
	local mk="$STATE/bin/mkimage"
	"$mk" files -o "$STATE/images/pause.tar" -tag "$PAUSE_IMAGE" -user 65535:65535 "$STATE/bin/pause=/pause"
	# medic's own image is the shipped one (scripts/image.sh), retagged.
	bash "$ROOT/scripts/image.sh" --tag medic.local/medic:e2e --out "$STATE/images/medic.tar" >"$STATE/logs/image.log"
	"$mk" files -o "$STATE/images/spire-agent.tar" -tag medic.local/spire-agent:e2e "$STATE/bin/spire-agent=/opt/spire/bin/spire-agent"
	"$mk" files -o "$STATE/images/relay.tar" -tag medic.local/relay:e2e "$STATE/bin/relay=/relay"
	local images_s
	images_s=$(since "$t")

	# The pods' bridge, with the host's address on it: the API server listens
	# there, so pods reach it without kube-proxy.
	ip link add "$BRIDGE" type bridge
	ip addr add "$GW/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up

	# Certificates: one CA, the API server's serving certificate, the
	# service-account signing key; static tokens for admin and the kubelet.
	t=$(now)
	local e="$STATE/etc"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=medic-node-e2e-ca" \
		-keyout "$e/ca.key" -out "$e/ca.crt" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$e/apiserver.key" -out "$e/apiserver.csr" 2>/dev/null
	printf 'subjectAltName=IP:%s,IP:127.0.0.1,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:localhost\nextendedKeyUsage=serverAuth\n' "$GW" >"$e/apiserver.ext"
	openssl x509 -req -in "$e/apiserver.csr" -CA "$e/ca.crt" -CAkey "$e/ca.key" -CAcreateserial -days 2 \
		-extfile "$e/apiserver.ext" -out "$e/apiserver.crt" 2>/dev/null
	openssl genrsa -out "$e/sa.key" 2048 2>/dev/null
	local admin_token kubelet_token
	admin_token=$(openssl rand -hex 16)
	kubelet_token=$(openssl rand -hex 16)
	printf '%s,admin,admin-uid,system:masters\n%s,system:node:%s,kubelet-uid,system:nodes\n' \
		"$admin_token" "$kubelet_token" "$NODE" >"$e/tokens.csv"

	local etcd_port etcd_peer api_port
	etcd_port=$(free_port)
	etcd_peer=$(free_port)
	api_port=$(free_port)
	local server="https://$GW:$api_port"
	local who tok
	for who in admin kubelet; do
		tok=$admin_token
		[[ $who == kubelet ]] && tok=$kubelet_token
		cat >"$e/$who.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: node-e2e
  cluster: {server: "$server", certificate-authority: "$e/ca.crt"}
users:
- name: $who
  user: {token: "$tok"}
contexts:
- name: node-e2e
  context: {cluster: node-e2e, user: $who}
current-context: node-e2e
EOF
	done

	# etcd + kube-apiserver: Node and RBAC authorization, the default
	# admission plugins (ServiceAccount, NodeRestriction included).
	if [[ -z $standalone ]]; then
	mkdir -p /dev/shm/medic-node-e2e-etcd
	rm -rf /dev/shm/medic-node-e2e-etcd/*
	ln -s /dev/shm/medic-node-e2e-etcd "$STATE/etcd"
	start etcd "$MEDIC_KUBE_BIN/etcd" --name=node-e2e --data-dir=/dev/shm/medic-node-e2e-etcd/data \
		--listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
		--listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
		--initial-cluster="node-e2e=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level=warn
	wait_for 30 etcd "etcd" curl -fsS "http://127.0.0.1:$etcd_port/health"
	start kube-apiserver "$MEDIC_KUBE_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
		--bind-address="$GW" --advertise-address="$GW" --secure-port="$api_port" \
		--tls-cert-file="$e/apiserver.crt" --tls-private-key-file="$e/apiserver.key" --client-ca-file="$e/ca.crt" \
		--token-auth-file="$e/tokens.csv" --authorization-mode=Node,RBAC \
		--service-account-issuer=https://kubernetes.default.svc \
		--service-account-key-file="$e/sa.key" --service-account-signing-key-file="$e/sa.key" \
		--service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none
	wait_for 90 kube-apiserver "kube-apiserver /readyz" \
		curl -fsS --cacert "$e/ca.crt" -H "Authorization: Bearer $admin_token" "$server/readyz"
	fi
	local apiserver_s
	apiserver_s=$(since "$t")

	# containerd: its own root, state and socket; the two fixes this kind
	# of machine needs (no CAP_SYS_RESOURCE: restrict_oom_score_adj; no
	# registry: the pause image built here).
	t=$(now)
	cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
[grpc]
  address = "$STATE/containerd/containerd.sock"
[ttrpc]
  address = "$STATE/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni/net.d"
EOF
	cat >"$STATE/cni/net.d/10-medic-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "medic-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam", "ranges": [[{"subnet": "$SUBNET", "gateway": "$GW"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "loopback"}
  ]
}
EOF
	start containerd containerd --config "$STATE/containerd/config.toml"
	local ctr=(ctr --address "$STATE/containerd/containerd.sock" -n k8s.io)
	wait_for 30 containerd "containerd" "${ctr[@]}" version
	local img
	for img in "$STATE"/images/*.tar; do
		"${ctr[@]}" images import "$img" >/dev/null || die "ctr images import $img failed"
	done
	local containerd_s
	containerd_s=$(since "$t")

	# The kubelet, registered with the API server as node $NODE, its pods'
	# cgroups under /$CGROUP_ROOT (which must exist) in every hierarchy.
	t=$(now)
	if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then # cgroup v2
		mkdir -p "/sys/fs/cgroup/$CGROUP_ROOT"
		sed 's/[^ ]*/+&/g' /sys/fs/cgroup/cgroup.subtree_control >"/sys/fs/cgroup/$CGROUP_ROOT/cgroup.subtree_control" 2>/dev/null || true
	else
		local h
		for h in /sys/fs/cgroup/*/; do
			[[ -d $h && ! -L ${h%/} ]] || continue
			mkdir -p "$h$CGROUP_ROOT"
			if [[ -f ${h}cpuset.cpus ]]; then
				cat "${h}cpuset.cpus" >"$h$CGROUP_ROOT/cpuset.cpus"
				cat "${h}cpuset.mems" >"$h$CGROUP_ROOT/cpuset.mems"
			fi
		done
	fi
	local kport hport
	kport=$(free_port)
	hport=$(free_port)
	cat >"$STATE/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$STATE/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
failSwapOn: false
failCgroupV1: false
address: 127.0.0.1
port: $kport
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $hport
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
resolvConf: ""
staticPodPath: $STATE/manifests
podLogsDir: $STATE/pod-logs
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 5s
nodeStatusUpdateFrequency: 5s
featureGates: {KubeletCrashLoopBackOffMax: true}
crashLoopBackOff: {maxContainerRestartPeriod: 2s}
EOF
	local kubeconfig=(--kubeconfig="$STATE/etc/kubelet.kubeconfig")
	[[ -z $standalone ]] || kubeconfig=()
	start kubelet "$MEDIC_KUBELET_BIN/kubelet" --config="$STATE/etc/kubelet.yaml" "${kubeconfig[@]}" \
		--root-dir="$STATE/kubelet" --cert-dir="$STATE/kubelet-certs" \
		--hostname-override="$NODE" --node-ip="$GW" --v=2
	node_ready() {
		curl -fsS --cacert "$e/ca.crt" -H "Authorization: Bearer $admin_token" "$server/api/v1/nodes/$NODE" |
			jq -e '.status.conditions[] | select(.type == "Ready") | .status == "True"'
	}
	if [[ -n $standalone ]]; then
		wait_for 120 kubelet "kubelet /healthz" curl -fsS "http://127.0.0.1:$hport/healthz"
	else
		wait_for 120 kubelet "node $NODE Ready" node_ready
	fi
	local kubelet_start_s
	kubelet_start_s=$(since "$t")

	cat >"$STATE/etc/node.json" <<EOF
{
  "kubeconfig": "$e/admin.kubeconfig",
  "node": "$NODE",
  "apiHost": "$GW",
  "apiPort": "$api_port",
  "caFile": "$e/ca.crt",
  "stateDir": "$STATE",
  "containerdSocket": "$STATE/containerd/containerd.sock",
  "images": {"medic": "medic.local/medic:e2e", "spireAgent": "medic.local/spire-agent:e2e",
             "relay": "medic.local/relay:e2e", "pause": "$PAUSE_IMAGE"}
}
EOF
	log "set up in $(since "$t0")s: kubelet binary ${kubelet_s}s, control-plane binaries ${cp_s}s," \
		"medic + peer images ${images_s}s, certificates + etcd + kube-apiserver ${apiserver_s}s," \
		"containerd + image import ${containerd_s}s, kubelet to node Ready ${kubelet_start_s}s"
}

# --- tests ------------------------------------------------------------------

# run_tests ARGS: go test -v of internal/nodee2e against the running node;
# sets SUMMARY to "N passed, M failed" (top-level tests) and returns
# non-zero on failure.
run_tests() {
	[[ -f $STATE/etc/node.json ]] || die "no node set up in $STATE (run with --setup first)"
	local out="$STATE/logs/go-test.log" rc=0
	(cd "$ROOT" && MEDIC_NODE_E2E="$STATE/etc/node.json" go test -count=1 -v -timeout 20m ./internal/nodee2e/ "$@") 2>&1 |
		tee "$out" >&2 || rc=$?
	local passed failed
	passed=$(grep -c '^--- PASS' "$out" || true)
	failed=$(grep -c '^--- FAIL' "$out" || true)
	if [[ $rc != 0 && $failed == 0 ]]; then
		failed=1 # the package failed to build or the test binary died
	fi
	SUMMARY="$passed passed, $failed failed"
	[[ $rc == 0 ]]
}

case "${1:-}" in
--setup)
	setup
	log "node running; tests: bash $0 --test; tear down: bash $0 --teardown"
	;;
--test)
	shift
	rc=0
	run_tests "$@" || rc=$?
	echo "$SUMMARY"
	exit "$rc"
	;;
--teardown)
	teardown
	;;
"")
	# Set-up in a child process, so that set -e holds in it.
	rc=0
	if bash "$0" --setup; then
		run_tests || rc=$?
	else
		log "set-up failed"
		SUMMARY="0 passed, 1 failed"
		rc=1
	fi
	[[ -n ${MEDIC_NODE_KEEP:-} ]] || teardown
	echo "$SUMMARY"
	exit "$rc"
	;;
*)
	echo "usage: $0 [--setup | --test [GO TEST ARGS] | --teardown]" >&2
	exit 2
	;;
esac
