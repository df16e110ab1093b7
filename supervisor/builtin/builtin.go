// Package builtin links every built-in probe and action kind into the
// binary. Import it for its side effects.
package builtin

import (
	// Actions.
	_ "github.com/medic-sidecar/medic/actions/certrefresh"
	_ "github.com/medic-sidecar/medic/actions/exec"
	_ "github.com/medic-sidecar/medic/actions/reconnect"
	_ "github.com/medic-sidecar/medic/actions/restart"
	_ "github.com/medic-sidecar/medic/actions/socketcleanup"
	_ "github.com/medic-sidecar/medic/plugins" // the "plugin" kind (external plugins)

	// Probes.
	_ "github.com/medic-sidecar/medic/supervisor/probe/certprobe"
	_ "github.com/medic-sidecar/medic/supervisor/probe/grpcstream"
	_ "github.com/medic-sidecar/medic/supervisor/probe/httpprobe"
	_ "github.com/medic-sidecar/medic/supervisor/probe/scrape"
	_ "github.com/medic-sidecar/medic/supervisor/probe/socketprobe"
	_ "github.com/medic-sidecar/medic/supervisor/probe/tcpconn"
	_ "github.com/medic-sidecar/medic/supervisor/probe/tcpprobe"
)
