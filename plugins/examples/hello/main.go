// Command hello is the smallest useful remediation plugin: it greets the
// incident in medic's log and audit record. docs/plugins.md walks through it.
package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/medic-sidecar/medic/plugins/sdk"
)

type config struct {
	Greeting string `json:"greeting"`
}

type hello struct{}

func (hello) Info() sdk.Info {
	return sdk.Info{Name: "hello", Version: "1.0.0", Description: "greets the incident in medic's log"}
}

func (hello) Validate(_ context.Context, raw json.RawMessage) error {
	c := config{Greeting: "hello"}
	return sdk.DecodeConfig(raw, &c)
}

func (hello) Remediate(ctx context.Context, inc sdk.Incident, raw json.RawMessage) (sdk.Result, error) {
	c := config{Greeting: "hello"}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return sdk.Result{}, sdk.Permanent(err)
	}
	msg := fmt.Sprintf("%s, %s (attempt %d)", c.Greeting, inc.Alert, inc.Attempt)
	sdk.Logger().Info(msg, "incident", inc.ID)
	return sdk.Result{Message: msg}, nil
}

func main() { sdk.Serve(hello{}) }
