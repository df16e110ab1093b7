// Package jsonfloat carries float64 values through JSON even when they are
// not finite. encoding/json refuses NaN and ±Inf (an alert on a ratio that
// divides by zero has such a value), which used to empty /status and reduce
// audit records to an error. Like Prometheus's HTTP API, non-finite values
// are written as the strings "NaN", "+Inf" and "-Inf"; finite values stay
// JSON numbers, byte for byte as encoding/json writes a float64.
package jsonfloat

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Float is a float64 that always marshals.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if s, ok := nonFinite(v); ok {
		return []byte(`"` + s + `"`), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON accepts a JSON number or a string holding a number,
// "NaN", "+Inf", "Inf" or "-Inf".
func (f *Float) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("jsonfloat: %q is not a number", s)
		}
		*f = Float(v)
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// String formats f as strconv does ("NaN", "+Inf", "-Inf", "0.25").
func (f Float) String() string { return strconv.FormatFloat(float64(f), 'g', -1, 64) }

func nonFinite(v float64) (string, bool) {
	switch {
	case math.IsNaN(v):
		return "NaN", true
	case math.IsInf(v, 1):
		return "+Inf", true
	case math.IsInf(v, -1):
		return "-Inf", true
	}
	return "", false
}

// Map converts a map of float64 for marshalling.
func Map(m map[string]float64) map[string]Float {
	if m == nil {
		return nil
	}
	out := make(map[string]Float, len(m))
	for k, v := range m {
		out[k] = Float(v)
	}
	return out
}

// Floats converts a map back (nil stays nil).
func Floats(m map[string]Float) map[string]float64 {
	if m == nil {
		return nil
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		out[k] = float64(v)
	}
	return out
}

// Sanitize returns v with every non-finite float64 or float32 inside maps
// and slices (as found in free-form details) replaced by its string form.
// Values without a non-finite float are returned as they are; containers
// that hold one are copied, never modified.
func Sanitize(v any) any {
	out, _ := sanitize(v)
	return out
}

// SanitizeMap is Sanitize for a details map.
func SanitizeMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out, _ := sanitize(m)
	return out.(map[string]any)
}

func sanitize(v any) (any, bool) {
	switch t := v.(type) {
	case float64:
		if s, ok := nonFinite(t); ok {
			return s, true
		}
	case float32:
		if s, ok := nonFinite(float64(t)); ok {
			return s, true
		}
	case map[string]any:
		var cp map[string]any
		for k, e := range t {
			if n, changed := sanitize(e); changed {
				if cp == nil {
					cp = make(map[string]any, len(t))
					for k2, e2 := range t {
						cp[k2] = e2
					}
				}
				cp[k] = n
			}
		}
		if cp != nil {
			return cp, true
		}
	case []any:
		var cp []any
		for i, e := range t {
			if n, changed := sanitize(e); changed {
				if cp == nil {
					cp = append([]any(nil), t...)
				}
				cp[i] = n
			}
		}
		if cp != nil {
			return cp, true
		}
	case []float64:
		var cp []any
		for i, e := range t {
			if s, ok := nonFinite(e); ok {
				if cp == nil {
					cp = make([]any, len(t))
					for j, x := range t {
						cp[j] = x
					}
				}
				cp[i] = s
			}
		}
		if cp != nil {
			return cp, true
		}
	case map[string]float64:
		for _, e := range t {
			if _, ok := nonFinite(e); ok {
				return Map(t), true
			}
		}
	}
	return v, false
}
