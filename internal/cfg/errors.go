package cfg

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// FieldError is one configuration problem at a field path such as
// "actions.restart.backoff.initial", with the YAML line when known.
type FieldError struct {
	Path string
	Line int
	Msg  string
	// Warning marks a FieldError that is not a problem (cfg.Warning).
	Warning bool
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	return b.String()
}

// Errorf returns a FieldError for path.
func Errorf(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Join joins a path prefix and a child ("a.b" + "c" = "a.b.c"; "a" + "[2]" = "a[2]").
func Join(prefix, child string) string {
	switch {
	case prefix == "":
		return child
	case child == "":
		return prefix
	case strings.HasPrefix(child, "["):
		return prefix + child
	}
	return prefix + "." + child
}

// Prefix puts prefix in front of every FieldError path inside err (an
// errors.Join tree or a single error). Plain errors become FieldErrors at prefix.
func Prefix(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			c := *fe
			c.Path = Join(prefix, fe.Path)
			out = append(out, &c)
			continue
		}
		out = append(out, &FieldError{Path: prefix, Msg: e.Error()})
	}
	return errors.Join(out...)
}

// Warnings separates the warnings in err (FieldErrors with Warning set)
// from the problems, which it returns joined (nil when there are none).
func Warnings(err error) (warnings []error, problems error) {
	var rest []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Warning {
			warnings = append(warnings, e)
			continue
		}
		rest = append(rest, e)
	}
	return warnings, errors.Join(rest...)
}

// Flatten lists the leaves of an errors.Join tree.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Sorted returns the leaves of err ordered by line then path, deduplicated.
func Sorted(err error) []error {
	errs := Flatten(err)
	seen := map[string]bool{}
	var out []error
	for _, e := range errs {
		if seen[e.Error()] {
			continue
		}
		seen[e.Error()] = true
		out = append(out, e)
	}
	line := func(e error) int {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Line > 0 {
			return fe.Line
		}
		return 1 << 30
	}
	sort.SliceStable(out, func(i, j int) bool { return line(out[i]) < line(out[j]) })
	return out
}

// Validator is implemented by config sections that check themselves.
// Errors are FieldErrors with paths relative to the section.
type Validator interface {
	Validate() error
}
