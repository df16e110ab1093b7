package plugins

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/internal/cfg"
)

// validateBudget bounds the plugin's Validate when an action is built
// (the host bounds it further by the plugin's startTimeout + timeout).
const validateBudget = 2 * time.Minute

func init() {
	actions.Register(actions.Kind{
		Name:      KindName,
		NewConfig: func() any { return &ActionConfig{} },
		New: func(c any, env actions.Env) (actions.Action, error) {
			return NewAction(context.Background(), *c.(*ActionConfig), env)
		},
	})
}

// Action is the "plugin" action kind: one remediation attempt is one
// Remediate call to the named plugin.
type Action struct {
	host   actions.PluginHost
	plugin string
	config []byte
}

var _ actions.Action = (*Action)(nil)

// NewAction builds the action and has the plugin validate its config, so
// a bad config fails at start-up with the plugin's own messages at
// actions.<name>.plugin.config.<field>.
func NewAction(ctx context.Context, c ActionConfig, env actions.Env) (*Action, error) {
	base := "actions." + env.Name + "." + KindName
	if h, ok := env.Plugins.(*Host); env.Plugins == nil || ok && h == nil {
		return nil, cfg.Errorf(base+".name", "plugin %q: no plugin host (is the top-level plugins section set?)", c.Name)
	}
	raw, err := c.JSON()
	if err != nil {
		return nil, cfg.Errorf(base+".config", "%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, validateBudget)
	defer cancel()
	if err := env.Plugins.Validate(ctx, c.Name, raw); err != nil {
		var fields, other []error
		for _, e := range cfg.Flatten(err) {
			var fe *cfg.FieldError
			if errors.As(e, &fe) {
				fields = append(fields, e)
			} else {
				other = append(other, e)
			}
		}
		if len(other) > 0 {
			return nil, cfg.Errorf(base+".name", "cannot validate config with plugin %q: %v", c.Name, errors.Join(other...))
		}
		return nil, cfg.Prefix(base+".config", errors.Join(fields...))
	}
	return &Action{host: env.Plugins, plugin: c.Name, config: raw}, nil
}

// Run performs one attempt through the plugin host.
func (a *Action) Run(ctx context.Context, inc actions.Incident) (actions.Result, error) {
	return a.host.Remediate(ctx, a.plugin, inc, a.config)
}

// ValidateActions checks every plugin binary (Check) and has each plugin
// validate the config of every action that uses it. uses maps action
// names to their plugin sections. Errors carry config field paths.
// `medic validate` calls it; start-up gets the same checks from Start and
// NewAction.
func ValidateActions(ctx context.Context, h *Host, uses map[string]*ActionConfig) error {
	if err := h.Check(); err != nil {
		return err
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(uses)) {
		if _, err := NewAction(ctx, *uses[name], actions.Env{Name: name, Plugins: h}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
