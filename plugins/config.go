package plugins

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/medic-sidecar/medic/internal/cfg"
)

// Start modes.
const (
	// StartLazy starts the plugin process on first use (a start-up
	// validation runs it briefly).
	StartLazy = "lazy"
	// StartEager starts the plugin process when medic starts.
	StartEager = "eager"
)

// Defaults.
const (
	DefaultTimeout        = 30 * time.Second
	DefaultStartTimeout   = 10 * time.Second
	DefaultRestartInitial = time.Second
	DefaultRestartMax     = time.Minute
	DefaultMaxCrashes     = 5
	DefaultCrashWindow    = 10 * time.Minute
)

// Config is one plugins.<name> entry: which binary to run and how to
// supervise it.
type Config struct {
	// Path is the plugin binary's absolute path.
	Path string `yaml:"path" json:"path"`
	// SHA256 is the binary's expected checksum (hex); medic refuses to run
	// a binary that does not match. `medic plugin info PATH` prints it.
	SHA256 string `yaml:"sha256" json:"sha256"`
	// Args are extra command-line arguments.
	Args []string `yaml:"args" json:"args,omitempty"`
	// Env adds variables to the environment the plugin inherits from medic.
	Env map[string]string `yaml:"env" json:"-"`
	// Timeout bounds one Remediate or Validate call (the incident's own
	// deadline applies when earlier).
	Timeout cfg.Duration `yaml:"timeout" json:"timeout"`
	// StartTimeout bounds the start of the process and its handshake.
	StartTimeout cfg.Duration `yaml:"startTimeout" json:"startTimeout"`
	// Start is lazy (on first use) or eager (when medic starts).
	Start string `yaml:"start" json:"start"`
	// Restart is the backoff between restarts after a crash.
	Restart RestartConfig `yaml:"restart" json:"restart"`
	// Quarantine stops restarting a plugin that keeps crashing.
	Quarantine QuarantineConfig `yaml:"quarantine" json:"quarantine"`
}

// RestartConfig is the exponential backoff (10% jitter) between restarts
// of a crashed plugin. It starts over once no crash is left in the
// quarantine window.
type RestartConfig struct {
	Initial cfg.Duration `yaml:"initial" json:"initial"`
	Max     cfg.Duration `yaml:"max" json:"max"`
}

// QuarantineConfig: a plugin that crashes more than MaxCrashes times within
// Window is quarantined: it is not restarted, and its actions fail as
// permanent errors until medic restarts or the binary changes on disk.
type QuarantineConfig struct {
	MaxCrashes int          `yaml:"maxCrashes" json:"maxCrashes"`
	Window     cfg.Duration `yaml:"window" json:"window"`
}

// DefaultConfig returns a plugin entry with every default filled in.
func DefaultConfig() *Config {
	return &Config{
		Timeout:      cfg.Duration(DefaultTimeout),
		StartTimeout: cfg.Duration(DefaultStartTimeout),
		Start:        StartLazy,
		Restart:      RestartConfig{Initial: cfg.Duration(DefaultRestartInitial), Max: cfg.Duration(DefaultRestartMax)},
		Quarantine:   QuarantineConfig{MaxCrashes: DefaultMaxCrashes, Window: cfg.Duration(DefaultCrashWindow)},
	}
}

var (
	nameRe   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	sha256Re = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	envKeyRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidName reports whether name can name a plugin.
func ValidName(name string) bool { return nameRe.MatchString(name) }

// Validate reports every problem, with paths relative to the entry.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, cfg.Errorf(path, format, args...)) }
	switch {
	case c.Path == "":
		add("path", "is required (the plugin binary's absolute path)")
	case !filepath.IsAbs(c.Path):
		add("path", "%q must be an absolute path", c.Path)
	}
	switch {
	case c.SHA256 == "":
		add("sha256", "is required: run 'medic plugin info %s' to print it", c.Path)
	case !sha256Re.MatchString(c.SHA256):
		add("sha256", "must be 64 hex digits, got %q", c.SHA256)
	}
	for k := range c.Env {
		if !envKeyRe.MatchString(k) {
			add("env."+k, "invalid environment variable name")
		}
	}
	if c.Timeout <= 0 {
		add("timeout", "must be greater than 0")
	}
	if c.StartTimeout <= 0 {
		add("startTimeout", "must be greater than 0")
	}
	if c.Start != StartLazy && c.Start != StartEager {
		add("start", "must be lazy or eager, not %q", c.Start)
	}
	if c.Restart.Initial <= 0 {
		add("restart.initial", "must be greater than 0")
	}
	if c.Restart.Max < c.Restart.Initial {
		add("restart.max", "must not be less than initial (%s)", c.Restart.Initial)
	}
	if c.Quarantine.MaxCrashes < 1 {
		add("quarantine.maxCrashes", "must be at least 1")
	}
	if c.Quarantine.Window <= 0 {
		add("quarantine.window", "must be greater than 0")
	}
	return errors.Join(errs...)
}

// checksum returns the expected sha256 as bytes (Validate has checked it).
func (c *Config) checksum() []byte {
	b, _ := hex.DecodeString(strings.ToLower(c.SHA256))
	return b
}

// KindName is the YAML key of the plugin action kind.
const KindName = "plugin"

// ActionConfig is actions.<name>.plugin: which plugin runs the action and
// the free-form config passed to it (as JSON).
type ActionConfig struct {
	// Name is a key of the top-level plugins map.
	Name string `yaml:"name" json:"name"`
	// Config is passed to the plugin's Validate and Remediate as JSON.
	Config any `yaml:"config" json:"config,omitempty"`
}

// Validate checks the entry without the plugin; the plugin checks its
// config when the action is built.
func (a *ActionConfig) Validate() error {
	var errs []error
	switch {
	case a.Name == "":
		errs = append(errs, cfg.Errorf("name", "is required (a key of the top-level plugins map)"))
	case !nameRe.MatchString(a.Name):
		errs = append(errs, cfg.Errorf("name", "%q: use letters, digits, '_', '-', '.'", a.Name))
	}
	if _, err := a.JSON(); err != nil {
		errs = append(errs, cfg.Errorf("config", "%v", err))
	}
	return errors.Join(errs...)
}

// JSON returns Config as the JSON document the plugin receives ("null"
// when none is given).
func (a *ActionConfig) JSON() ([]byte, error) {
	v, err := jsonable(a.Config, "")
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("cannot be encoded as JSON: %w", err)
	}
	return b, nil
}

// jsonable turns YAML-decoded values into JSON-encodable ones: mappings
// with non-string keys (e.g. 1: x) get their keys as strings.
func jsonable(v any, path string) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			c, err := jsonable(e, cfg.Join(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			ks := fmt.Sprint(k)
			c, err := jsonable(e, cfg.Join(path, ks))
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			c, err := jsonable(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case float64:
		if math.IsInf(t, 0) || math.IsNaN(t) {
			if path == "" {
				return nil, fmt.Errorf("%v is not a JSON number", t)
			}
			return nil, fmt.Errorf("%s: %v is not a JSON number", path, t)
		}
	}
	return v, nil
}
