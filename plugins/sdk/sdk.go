// Package sdk is what a remediation plugin author imports. A plugin is a
// separate binary that implements Plugin (and optionally Validator) and
// calls Serve from main:
//
//	type hello struct{}
//
//	func (hello) Info() sdk.Info { return sdk.Info{Name: "hello", Version: "1.0.0"} }
//
//	func (hello) Remediate(ctx context.Context, inc sdk.Incident, config json.RawMessage) (sdk.Result, error) {
//		return sdk.Result{Message: "hello " + inc.Alert}, nil
//	}
//
//	func main() { sdk.Serve(hello{}) }
//
// The handshake with medic, protocol versioning, mTLS, deadline
// propagation, panic recovery and log forwarding are handled here.
// Return Permanent(err) when retrying cannot help; any other error is
// retried by medic with the action's backoff. Logs written with Logger()
// appear in medic's log with the plugin's name.
//
// The package also holds the host's side of the boundary (GRPCPlugin,
// Client); plugin authors do not need those.
package sdk

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/medic-sidecar/medic/internal/jsonfloat"
)

// ProtocolVersion is the version of the remediation plugin protocol this
// SDK speaks. medic refuses plugins that speak another version.
const ProtocolVersion = 1

// PluginName is the name under which the remediation service is dispensed.
const PluginName = "remediator"

// Handshake is shared by medic and every plugin. The cookie only stops a
// plugin binary from being run by hand by mistake; it is not a secret.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "MEDIC_PLUGIN_COOKIE",
	MagicCookieValue: "medic-remediation-plugin",
}

// Plugin is a remediation action served by a plugin binary.
type Plugin interface {
	// Info describes the plugin. It must be cheap and must not fail.
	Info() Info
	// Remediate performs one attempt. config is the action's plugin
	// config as JSON (use DecodeConfig). ctx ends at the attempt's
	// deadline and when medic cancels the attempt: honour it, or medic
	// kills and restarts the plugin. Return Permanent(err) when retrying
	// cannot help.
	Remediate(ctx context.Context, inc Incident, config json.RawMessage) (Result, error)
}

// Validator is implemented by plugins that check their config. medic
// calls Validate for every action using the plugin when it loads its
// config (at start-up and in `medic validate`). Return Errorf problems,
// joined with errors.Join, so each one is reported with its field path.
type Validator interface {
	Validate(ctx context.Context, config json.RawMessage) error
}

// Info describes a plugin.
type Info struct {
	// Name is the plugin's name, e.g. "webhook".
	Name string `json:"name"`
	// Version is the plugin's own version, e.g. "1.2.0".
	Version string `json:"version"`
	// Description is one line for `medic plugin info`.
	Description string `json:"description,omitempty"`
	// ConfigSchema is a JSON Schema document describing the config, for
	// documentation (`medic plugin info`); Validate does the checking.
	ConfigSchema json.RawMessage `json:"configSchema,omitempty"`
	// ProtocolVersion is filled in by the SDK.
	ProtocolVersion uint32 `json:"protocolVersion"`
}

// Incident is the problem an attempt is asked to fix. It has the same
// JSON form as medic's audit records.
type Incident struct {
	ID          string            `json:"id"`
	Alert       string            `json:"alert"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Value       float64           `json:"value"`
	Step        int               `json:"step"`    // 1-based ladder step
	Action      string            `json:"action"`  // configured action name
	Attempt     int               `json:"attempt"` // 1-based attempt within the step
	MaxAttempts int               `json:"maxAttempts"`
	Started     time.Time         `json:"started"`
	DryRun      bool              `json:"dryRun,omitempty"`
}

// MarshalJSON writes a non-finite Value (an alert on a ratio that divided
// by zero) as "NaN", "+Inf" or "-Inf", as Prometheus's API does, instead
// of failing: encoding/json refuses those floats.
func (i Incident) MarshalJSON() ([]byte, error) {
	type plain Incident
	return json.Marshal(struct {
		plain
		Value jsonfloat.Float `json:"value"`
	}{plain(i), jsonfloat.Float(i.Value)})
}

// UnmarshalJSON reads what MarshalJSON writes (a number or "NaN", "+Inf", "-Inf").
func (i *Incident) UnmarshalJSON(b []byte) error {
	type plain Incident
	var v struct {
		*plain
		Value jsonfloat.Float `json:"value"`
	}
	v.plain = (*plain)(i)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	i.Value = float64(v.Value)
	return nil
}

// Result is what an attempt leaves in medic's audit record.
type Result struct {
	// Message is a one-line summary ("posted to https://…: 202").
	Message string `json:"message,omitempty"`
	// Output is free text; medic keeps at most 8 KiB of it.
	Output string `json:"output,omitempty"`
	// Details are structured facts; they must encode as JSON.
	Details map[string]any `json:"details,omitempty"`
}

// Outcome is how an attempt ended, as the plugin reported it.
type Outcome int

// Outcomes.
const (
	// Unspecified means the plugin sent no outcome (a protocol error).
	Unspecified Outcome = iota
	// Succeeded: the action did its part.
	Succeeded
	// RetryableError: a later attempt may succeed.
	RetryableError
	// PermanentError: retrying cannot help; the ladder escalates.
	PermanentError
)

// String returns "succeeded", "retryable error", "permanent error" or "unspecified".
func (o Outcome) String() string {
	switch o {
	case Succeeded:
		return "succeeded"
	case RetryableError:
		return "retryable error"
	case PermanentError:
		return "permanent error"
	}
	return "unspecified"
}

// Serve serves p to medic and returns when medic stops the plugin. Call
// it from main. Run by hand (not by medic), the binary prints a notice
// and exits 1.
func Serve(p Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			ProtocolVersion: {PluginName: &GRPCPlugin{Impl: p}},
		},
		GRPCServer: plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Level:      hclog.Debug,
			Output:     stderr,
			JSONFormat: true,
		}),
	})
}
