package cfg

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Load decodes one YAML document into v (a pointer, pre-filled with
// defaults) with yaml.v3's strict decoder: an unknown key anywhere is an
// error. With lookup set, ${VAR} references are expanded first (see
// ExpandEnv). Every problem yaml reports is returned, each as a FieldError
// with its field path and line; the returned Doc locates later problems
// (a kind's Validate) by path. Custom scalar types report bad values with
// NodeError so that decoding carries on and lists them all.
func Load(b []byte, v any, lookup func(string) (string, bool)) (*Doc, error) {
	if err := checkText(b); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	top := &document{v: v, lookup: lookup}
	err := dec.Decode(top)
	switch {
	case errors.Is(err, io.EOF):
		return nil, &FieldError{Msg: "config is empty"}
	case top.root == nil && err == nil: // a lone null
		return nil, &FieldError{Line: 1, Msg: "config is empty"}
	case top.root == nil: // the parser failed before decoding began
		return nil, syntaxError(b, err)
	}
	doc := newDoc(top.root)
	doc.v = v
	errs := []error{top.envErr, doc.Problems(err)}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		line := next.Line
		if err != nil {
			line = 0
		}
		errs = append(errs, &FieldError{Line: line, Msg: "a second YAML document (after ---) is not supported: medic reads exactly one"})
	}
	return doc, errors.Join(errs...)
}

// Decode strictly decodes an already parsed node into v, with problem
// paths rooted at path and lines taken from node. It serves callers (and
// tests) that hold one section of a document.
func Decode(node *yaml.Node, v any, path string) error {
	if node == nil {
		return nil
	}
	b, err := yaml.Marshal(node)
	if err != nil {
		return &FieldError{Path: path, Line: node.Line, Msg: err.Error()}
	}
	_, err = Load(b, v, nil)
	orig := newDoc(node)
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			c := *fe
			if l := orig.Line(c.Path); l > 0 {
				c.Line = l
			}
			c.Path = Join(path, c.Path)
			e = &c
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// document is the top-level value handed to yaml's decoder: it takes the
// parsed tree first (for ${VAR} expansion and the path index), then
// decodes it into v. The unmarshal callback (yaml's obsolete-style
// Unmarshaler) keeps the decoder's strict mode for v.
type document struct {
	v      any
	lookup func(string) (string, bool)
	root   *yaml.Node
	envErr error
}

func (d *document) UnmarshalYAML(unmarshal func(any) error) error {
	d.root = NodeOf(unmarshal)
	if d.lookup != nil {
		d.envErr = ExpandEnv(d.root, d.lookup)
	}
	return unmarshal(d.v)
}

// NodeOf returns the node an obsolete-style UnmarshalYAML(unmarshal) is
// decoding: the decoder's own node, so changes to it are what later
// unmarshal calls decode.
func NodeOf(unmarshal func(any) error) *yaml.Node {
	var g nodeGrab
	_ = unmarshal(&g) // nodeGrab never fails
	return g.n
}

type nodeGrab struct{ n *yaml.Node }

func (g *nodeGrab) UnmarshalYAML(n *yaml.Node) error { g.n = n; return nil }

// NodeError reports a problem with node n from inside an UnmarshalYAML
// method. It is a *yaml.TypeError, which the decoder collects and goes
// on, so every problem is listed; Load turns it into a FieldError at n's
// path and line.
func NodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: column %d: %s", n.Line, n.Column, fmt.Sprintf(format, args...))}}
}

// warningMark starts the message of a NodeError that is a warning.
const warningMark = "warning: "

// Warning reports something about node n that decodes but deserves the
// user's attention (a deprecated key), from inside an UnmarshalYAML
// method, as NodeError does; it becomes a FieldError with Warning set,
// which Warnings separates from the problems.
func Warning(n *yaml.Node, format string, args ...any) error {
	return NodeError(n, warningMark+format, args...)
}

// KindName describes a node for messages ("a mapping", "a list", `"x"`).
func KindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	return strconv.Quote(n.Value)
}

// Doc is a decoded document's tree, indexed by field path and line.
type Doc struct {
	nodes []located
	lines map[string]int
	v     any // the decoded value, for "did you mean"
}

// Problems turns the *yaml.TypeError in err (yaml's own messages and
// NodeErrors) into FieldErrors with paths and lines; other errors are kept.
func (d *Doc) Problems(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	var out []error
	for _, m := range te.Errors {
		out = append(out, d.problem(m, d.v))
	}
	return errors.Join(out...)
}

// Keys lists the keys of the mapping at path, in document order.
func (d *Doc) Keys(path string) []string {
	for _, n := range d.nodes {
		if !n.key && n.path == path && n.node.Kind == yaml.MappingNode {
			return Keys(n.node)
		}
	}
	return nil
}

// Keys lists the keys of a mapping node.
func Keys(n *yaml.Node) []string {
	var keys []string
	for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	return keys
}

// FieldNames lists the keys yaml encodes v with (every field: medic's
// config types use no omitempty), for "did you mean" hints.
func FieldNames(v any) []string {
	var n yaml.Node
	if n.Encode(v) != nil {
		return nil
	}
	return Keys(&n)
}

// TypeErrors merges errors for returning from an UnmarshalYAML method:
// yaml collects a *yaml.TypeError and goes on; nil if there are none.
func TypeErrors(errs ...error) error {
	var msgs []string
	for _, e := range errs {
		var te *yaml.TypeError
		if errors.As(e, &te) {
			msgs = append(msgs, te.Errors...)
		} else if e != nil {
			msgs = append(msgs, e.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &yaml.TypeError{Errors: msgs}
}

type located struct {
	path      string
	key       bool // a mapping key (else a value)
	line, col int
	node      *yaml.Node
}

func newDoc(root *yaml.Node) *Doc {
	d := &Doc{lines: map[string]int{}}
	d.index(root, "")
	return d
}

func (d *Doc) index(n *yaml.Node, path string) {
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			d.index(c, path)
		}
		return
	}
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	d.nodes = append(d.nodes, located{path: path, line: n.Line, col: n.Column, node: n})
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := Join(path, k.Value)
			d.lines[p] = k.Line
			d.nodes = append(d.nodes, located{path: p, key: true, line: k.Line, col: k.Column, node: k})
			d.index(n.Content[i+1], p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.index(c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

// Line returns the line of path, or of its nearest parent in the document.
func (d *Doc) Line(path string) int {
	for p := path; ; p = parent(p) {
		if l, ok := d.lines[p]; ok && l > 0 {
			return l
		}
		if p == "" {
			return 0
		}
	}
}

// Locate gives every FieldError in err that lacks a line the line of its
// path (with prefix removed first, for a Doc of one section).
func (d *Doc) Locate(err error, prefix string) error {
	if err == nil || d == nil {
		return err
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) && fe.Line == 0 {
			c := *fe
			rel := strings.TrimPrefix(strings.TrimPrefix(c.Path, prefix), ".")
			c.Line = d.Line(rel)
			e = &c
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i <= 0 {
		return ""
	}
	return p[:i]
}

// problem turns one of yaml's "line N: …" messages into a FieldError with
// the path of the node it is about. yaml.v3 reports type errors only as
// text, so its few message shapes are read here.
func (d *Doc) problem(msg string, v any) *FieldError {
	line, rest := cutPrefixInt(msg, "line ", ": ")
	if col, r := cutPrefixInt(rest, "column ", ": "); col > 0 { // NodeError
		msg, warn := strings.CutPrefix(r, warningMark)
		return &FieldError{Path: d.at(line, col), Line: line, Msg: msg, Warning: warn}
	}
	if f, ok := strings.CutPrefix(rest, "field "); ok {
		if key, _, ok := strings.Cut(f, " not found in type "); ok {
			path := d.unknownKey(line, key, v)
			return &FieldError{Path: path, Line: line, Msg: "unknown field" + Suggest(key, knownKeys(v, parent(path)))}
		}
	}
	if f, ok := strings.CutPrefix(rest, "mapping key "); ok {
		if key, first, ok := strings.Cut(f, " already defined at line "); ok {
			k, _ := strconv.Unquote(key)
			return &FieldError{Path: d.key(line, k), Line: line, Msg: "duplicate key: first defined at line " + first}
		}
	}
	if r, ok := strings.CutPrefix(rest, "cannot unmarshal "); ok {
		if i := strings.LastIndex(r, " into "); i > 0 {
			if n := d.value(line, r[:i]); n != nil {
				return &FieldError{Path: n.path, Line: line, Msg: mismatch(n.node, r[i+len(" into "):])}
			}
		}
	}
	fe := &FieldError{Line: line, Msg: rest}
	if n := d.value(line, rest); n != nil {
		fe.Path = n.path
	}
	return fe
}

// mismatch says that node n cannot be decoded into the Go type named typ.
func mismatch(n *yaml.Node, typ string) string {
	switch {
	case strings.HasPrefix(typ, "[]"):
		typ = "a list"
	case strings.HasPrefix(typ, "map[") || strings.Contains(typ, "."):
		typ = "a mapping"
	}
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf("cannot use %q as %s", n.Value, typ)
	}
	return fmt.Sprintf("expected %s, got %s", typ, KindName(n))
}

// cutPrefixInt reads "<prefix><int><sep>" from the front of s.
func cutPrefixInt(s, prefix, sep string) (int, string) {
	r, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return 0, s
	}
	num, rest, ok := strings.Cut(r, sep)
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, s
	}
	return n, rest
}

// at is the path of the node at line:col (a value before a key).
func (d *Doc) at(line, col int) string {
	best := ""
	for _, n := range d.nodes {
		if n.line == line && n.col == col && (best == "" || !n.key) {
			best = n.path
		}
	}
	return best
}

// key is the path of the mapping key named key on line.
func (d *Doc) key(line int, key string) string {
	for _, n := range d.nodes {
		if n.key && n.line == line && n.node.Value == key {
			return n.path
		}
	}
	if n := d.value(line, ""); n != nil {
		return n.path
	}
	return ""
}

// unknownKey is the path of the key named key on line that v has no field
// for: on a line with several such keys (flow mappings, "{a: 1, b: {a:
// 2}}") the one whose mapping does not know it, else the first.
func (d *Doc) unknownKey(line int, key string, v any) string {
	for _, n := range d.nodes {
		if n.key && n.line == line && n.node.Value == key && !slices.Contains(knownKeys(v, parent(n.path)), key) {
			return n.path
		}
	}
	return d.key(line, key)
}

// value is the value on line that yaml's message ("!!str `maybe`",
// "!!seq") is about: the one with that tag (and quoted text), else the
// deepest value on the line.
func (d *Doc) value(line int, msg string) *located {
	tag, quoted, _ := strings.Cut(msg, " `") // "!!str `maybe`", "!!seq"
	quoted = strings.TrimSuffix(strings.TrimSuffix(quoted, "`"), "...")
	var best *located
	for i := range d.nodes {
		n := &d.nodes[i]
		if n.key || n.line != line {
			continue
		}
		if n.node.ShortTag() == tag && strings.HasPrefix(n.node.Value, quoted) {
			return n
		}
		if best == nil || len(n.path) >= len(best.path) {
			best = n
		}
	}
	return best
}

// knownKeys lists the keys yaml accepts at path of v: v as the library
// encodes it (every field is encoded; none is omitempty).
func knownKeys(v any, path string) []string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil
	}
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil {
		return nil
	}
	return newDoc(&root).Keys(path)
}

// Suggest returns " (did you mean "x"?)" for the known name closest to key
// (case, '_' and up to two edits apart), else " (known: …)" for a short
// list, else "".
func Suggest(key string, known []string) string {
	best, bestDist := "", 3
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for _, k := range known {
		d := editDistance(norm(key), norm(k))
		if d < bestDist && d < max(len(k), 2) {
			best, bestDist = k, d
		}
	}
	switch {
	case best != "":
		return fmt.Sprintf(" (did you mean %q?)", best)
	case len(known) > 0 && len(known) <= 16:
		return " (known: " + strings.Join(known, ", ") + ")"
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// checkText rejects input that is not UTF-8 text, with the line and
// column of the first bad byte (yaml's own message has neither).
func checkText(b []byte) error {
	if bytes.HasPrefix(b, []byte{0xfe, 0xff}) || bytes.HasPrefix(b, []byte{0xff, 0xfe}) {
		return nil // UTF-16 with a byte order mark: yaml decodes it
	}
	line, col := 1, 1
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return &FieldError{Line: line, Msg: fmt.Sprintf("not UTF-8 text: byte 0x%02x at column %d (save the file as UTF-8)", b[i], col)}
		}
		if r == '\n' {
			line, col = line+1, 0
		}
		col++
		i += size
	}
	return nil
}

// syntaxError reports a parse error with its line; when a line is
// indented with a tab (the usual cause), it says so.
func syntaxError(b []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, rest := cutPrefixInt(msg, "line ", ": ")
	fe := &FieldError{Line: line, Msg: "YAML syntax: " + rest}
	for i, l := range strings.Split(string(b), "\n") {
		indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		near := line == 0 || i+1 == line || i+1 == line+1 // yaml may name the line before the tab
		if near && strings.Contains(indent, "\t") {
			fe.Line = i + 1
			fe.Msg = "YAML syntax: indented with a tab; YAML indents with spaces (" + rest + ")"
			break
		}
	}
	return fe
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
				visit(n.Content[i], path)
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
			if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
				n.Tag = "" // plain: resolve the expanded text (count: ${N} is an int)
			}
		}
	}
	visit(n, "")
	return errors.Join(errs...)
}
