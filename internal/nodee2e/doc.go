// Package nodee2e holds medic's node end-to-end tests: real pods on a real
// kubelet (v1.34, registered with the project's real kube-apiserver,
// containerd 1.6 and runc underneath), with medic and the test peers as
// container images built from this repository.
//
// scripts/node-e2e.sh sets the node up, runs the tests with MEDIC_NODE_E2E
// naming the node's description (node.json: admin kubeconfig, node name,
// API server address, images), and tears everything down. Without
// MEDIC_NODE_E2E the tests skip (they fail instead with
// MEDIC_REQUIRE_NODE=1).
//
// The command under cmd/ is the set-up's pause (the pod sandbox image's
// program); the images are written by internal/tools/mkimage's `files`
// mode, tarballs that `ctr images import` accepts.
package nodee2e
