// Package builtin links every built-in probe and action kind into the
// binary. Import it for its side effects.
package builtin

import (
	// Actions.
	_ "github.com/medic-sidecar/medic/actions/exec"
	_ "github.com/medic-sidecar/medic/actions/restart"
	_ "github.com/medic-sidecar/medic/plugins" // the "plugin" kind (external plugins)
)
