package builtin_test

import (
	"github.com/medic-sidecar/medic/actions/reconnect"
	"github.com/medic-sidecar/medic/supervisor/probe/grpcstream"
)

// The reconnect action re-dials a grpcStream probe through the interface
// it defines itself; the probe does not import the action.
var _ reconnect.Redialer = (*grpcstream.Probe)(nil)
