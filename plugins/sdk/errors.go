package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: medic skips the step's
// remaining attempts and escalates. A nil err stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err (or anything it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// FieldError is one config problem at a field path relative to the
// plugin's config ("url", "headers.X-Token"); an empty Path means the
// config as a whole. medic reports it as
// actions.<name>.plugin.config.<path>.
type FieldError struct {
	Path string `json:"path"`
	Msg  string `json:"message"`
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Errorf returns a FieldError for path.
func Errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// FieldErrors lists the problems in err: each leaf of an errors.Join tree
// becomes one FieldError (plain errors get an empty path).
func FieldErrors(err error) []FieldError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []FieldError
		for _, e := range j.Unwrap() {
			out = append(out, FieldErrors(e)...)
		}
		return out
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return []FieldError{*fe}
	}
	return []FieldError{{Msg: err.Error()}}
}

// DecodeConfig decodes the JSON config into v (a pointer, pre-filled with
// defaults) strictly: an unknown key or a value of the wrong type is a
// FieldError with its path. An empty or null config leaves v unchanged.
func DecodeConfig(config json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(config)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(new(json.RawMessage)) != io.EOF {
			return Errorf("", "config must be a single JSON value")
		}
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return Errorf(te.Field, "cannot use a JSON %s as %s", te.Value, te.Type)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return Errorf(strings.Trim(msg, `"`), "unknown field")
	}
	return Errorf("", "invalid config: %v", err)
}
