package cfg

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// ScalarChecker is implemented by custom scalar types (Duration, Percent)
// so the strict walk can report a bad value with its path and line.
type ScalarChecker interface {
	CheckScalar(s string) error
}

// CheckScalar validates a duration string.
func (Duration) CheckScalar(s string) error { _, err := ParseDuration(s); return err }

// CheckScalar validates a percentage string.
func (Percent) CheckScalar(s string) error { _, err := ParsePercent(s); return err }

var (
	yamlNodeType  = reflect.TypeOf(yaml.Node{})
	checkerType   = reflect.TypeOf((*ScalarChecker)(nil)).Elem()
	unmarshalType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// Decode strictly decodes node into v (a pointer, pre-filled with defaults).
// Every unknown key and every badly typed value is reported, each with its
// field path (rooted at path) and line; nothing stops at the first problem.
func Decode(node *yaml.Node, v any, path string) error {
	if node == nil {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) > 0 {
		node = node.Content[0]
	}
	var errs []error
	walk(node, reflect.TypeOf(v), path, &errs, 0)
	if err := node.Decode(v); err != nil && len(errs) == 0 {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			for _, m := range te.Errors {
				errs = append(errs, &FieldError{Path: path, Msg: m})
			}
		} else {
			errs = append(errs, &FieldError{Path: path, Line: node.Line, Msg: err.Error()})
		}
	}
	return errors.Join(errs...)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "unknown"
}

// maxDepth bounds the walk: config is shallow, and alias cycles must not recurse forever.
const maxDepth = 64

func walk(n *yaml.Node, t reflect.Type, path string, errs *[]error, depth int) {
	if depth > maxDepth {
		*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: "nested too deeply (alias cycle?)"})
		return
	}
	depth++
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // explicit null keeps the default
	}
	if t == yamlNodeType || t.Kind() == reflect.Interface {
		return
	}
	if reflect.PointerTo(t).Implements(checkerType) || t.Implements(checkerType) {
		if n.Kind != yaml.ScalarNode {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: "expected a scalar, got " + kindName(n)})
			return
		}
		c := reflect.New(t).Interface().(ScalarChecker)
		if err := c.CheckScalar(n.Value); err != nil {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: err.Error()})
		}
		return
	}
	if reflect.PointerTo(t).Implements(unmarshalType) {
		return // the type checks itself
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: "expected a mapping, got " + kindName(n)})
			return
		}
		fields, inline := structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				if inline != nil {
					walk(val, inline, Join(path, k.Value), errs, depth)
					continue
				}
				*errs = append(*errs, &FieldError{Path: Join(path, k.Value), Line: k.Line,
					Msg: "unknown field" + suggest(k.Value, fields)})
				continue
			}
			walk(val, ft, Join(path, k.Value), errs, depth)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: "expected a mapping, got " + kindName(n)})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walk(n.Content[i+1], t.Elem(), Join(path, n.Content[i].Value), errs, depth)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: "expected a list, got " + kindName(n)})
			return
		}
		for i, item := range n.Content {
			walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs, depth)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("expected %s, got %s", t.Kind(), kindName(n))})
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			*errs = append(*errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("cannot use %q as %s", n.Value, t.Kind())})
		}
	}
}

// structFields maps YAML keys to field types, flattening ",inline" structs;
// an inline map's value type is returned as the catch-all.
func structFields(t reflect.Type) (map[string]reflect.Type, reflect.Type) {
	fields := map[string]reflect.Type{}
	var inline reflect.Type
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Map {
				inline = ft.Elem()
				continue
			}
			sub, subInline := structFields(ft)
			for k, v := range sub {
				fields[k] = v
			}
			if subInline != nil {
				inline = subInline
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields, inline
}

func suggest(key string, fields map[string]reflect.Type) string {
	var names []string
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if strings.EqualFold(k, key) || strings.EqualFold(strings.ReplaceAll(k, "_", ""), strings.ReplaceAll(key, "_", "")) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
	}
	if len(names) > 0 && len(names) <= 16 {
		return " (known: " + strings.Join(names, ", ") + ")"
	}
	return ""
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${VAR} and ${VAR:-default} in every scalar of the
// tree (keys included). A variable that is unset and has no default is an
// error with its path and line. "$${" escapes a literal "${".
func ExpandEnv(n *yaml.Node, lookup func(string) (string, bool)) error {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	var errs []error
	var visit func(n *yaml.Node, path string)
	visit = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				visit(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				visit(n.Content[i+1], Join(path, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				visit(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.ScalarNode:
			if !strings.Contains(n.Value, "${") {
				return
			}
			const esc = "\x00medic-esc\x00"
			s := strings.ReplaceAll(n.Value, "$${", esc)
			s = envRef.ReplaceAllStringFunc(s, func(m string) string {
				sub := envRef.FindStringSubmatch(m)
				if v, ok := lookup(sub[1]); ok && (v != "" || sub[2] == "") {
					return v
				}
				if sub[2] != "" {
					return sub[3]
				}
				errs = append(errs, &FieldError{Path: path, Line: n.Line, Msg: fmt.Sprintf("environment variable %s is not set", sub[1])})
				return ""
			})
			n.Value = strings.ReplaceAll(s, esc, "${")
		}
	}
	visit(n, "")
	return errors.Join(errs...)
}
