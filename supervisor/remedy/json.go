package remedy

import (
	"encoding/json"

	"github.com/medic-sidecar/medic/internal/jsonfloat"
)

// The alert value of an event, attempt or incident may be NaN or ±Inf (a
// ratio that divides by zero). encoding/json refuses those, so each type
// carrying a value marshals it as jsonfloat.Float ("NaN", "+Inf", "-Inf")
// and its details with non-finite floats as strings. Every JSON writer of
// medic (/status, audit.jsonl, incidents.json) goes through these.

// MarshalJSON implements json.Marshaler.
func (ev Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		plain
		Value   jsonfloat.Float `json:"value"`
		Details map[string]any  `json:"details,omitempty"`
	}{plain(ev), jsonfloat.Float(ev.Value), jsonfloat.SanitizeMap(ev.Details)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (ev *Event) UnmarshalJSON(b []byte) error {
	type plain Event
	var v struct {
		*plain
		Value jsonfloat.Float `json:"value"`
	}
	v.plain = (*plain)(ev)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	ev.Value = float64(v.Value)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (a AttemptView) MarshalJSON() ([]byte, error) {
	type plain AttemptView
	return json.Marshal(struct {
		plain
		Value   jsonfloat.Float `json:"value"`
		Details map[string]any  `json:"details,omitempty"`
	}{plain(a), jsonfloat.Float(a.Value), jsonfloat.SanitizeMap(a.Details)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (a *AttemptView) UnmarshalJSON(b []byte) error {
	type plain AttemptView
	var v struct {
		*plain
		Value jsonfloat.Float `json:"value"`
	}
	v.plain = (*plain)(a)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	a.Value = float64(v.Value)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (iv IncidentView) MarshalJSON() ([]byte, error) {
	type plain IncidentView
	return json.Marshal(struct {
		plain
		Value jsonfloat.Float `json:"value"`
	}{plain(iv), jsonfloat.Float(iv.Value)})
}

// UnmarshalJSON implements json.Unmarshaler.
func (iv *IncidentView) UnmarshalJSON(b []byte) error {
	type plain IncidentView
	var v struct {
		*plain
		Value jsonfloat.Float `json:"value"`
	}
	v.plain = (*plain)(iv)
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	iv.Value = float64(v.Value)
	return nil
}
