package nodee2e

import (
	"testing"

	_ "github.com/medic-sidecar/medic/supervisor/builtin"

	"github.com/medic-sidecar/medic/supervisor/config"
)

// The test pods' medic.yaml files are valid configurations (checked
// without a node, so a broken one fails `go test ./...` too).
func TestMedicConfigsValid(t *testing.T) {
	for name, c := range map[string]string{
		"probe":  medicConfig(probeRestart, defaultStep),
		"signal": medicConfig(signalRestart, defaultStep),
		"budget": medicConfig(signalRestart, budgetStep),
		"sc":     medicConfig(signalRestart, scStep),
		"relay":  relayConfig,
	} {
		if _, err := config.Parse([]byte(c)); err != nil {
			t.Errorf("%s: %v\n%s", name, err, c)
		}
	}
}
