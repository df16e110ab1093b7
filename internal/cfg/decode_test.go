package cfg

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type section struct {
	Interval Duration          `yaml:"interval"`
	Jitter   Percent           `yaml:"jitter"`
	Count    int               `yaml:"count"`
	Labels   map[string]string `yaml:"labels"`
	Inner    struct {
		Timeout Duration `yaml:"timeout"`
	} `yaml:"inner"`
}

// A plain yaml.Unmarshal of a bad duration is an error, not a silent zero.
func TestDurationUnmarshalReturnsItsError(t *testing.T) {
	var s section
	err := yaml.Unmarshal([]byte("interval: soon\njitter: 150%\n"), &s)
	if err == nil || !strings.Contains(err.Error(), `invalid duration "soon"`) || !strings.Contains(err.Error(), `invalid percentage "150%"`) {
		t.Fatalf("got %v", err)
	}
	if err := yaml.Unmarshal([]byte("interval: 1d\njitter: 20%\n"), &s); err != nil || s.Interval.D().Hours() != 24 || s.Jitter != 20 {
		t.Fatalf("good values: %v %+v", err, s)
	}
}

func TestLoadListsEveryProblemWithPathAndLine(t *testing.T) {
	s := section{Interval: Duration(5e9)}
	_, err := Load([]byte(`interval: 5x
count: [1]
labels: {a: b}
inner: {timeout: 1s, timout: 2s}
intervall: 1s
`), &s, nil)
	want := []string{
		`interval: invalid duration "5x" (use e.g. 500ms, 5s, 1m, 1h, 1d) (line 1)`,
		`count: expected int, got a list (line 2)`,
		`inner.timout: unknown field (did you mean "timeout"?) (line 4)`,
		`intervall: unknown field (did you mean "interval"?) (line 5)`,
	}
	var got []string
	for _, e := range Sorted(err) {
		got = append(got, e.Error())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if s.Inner.Timeout.D().Seconds() != 1 || s.Labels["a"] != "b" {
		t.Fatalf("good fields not decoded: %+v", s)
	}
}

func TestLoadDefaultsNullsAndEnv(t *testing.T) {
	s := section{Interval: Duration(5e9)}
	env := map[string]string{"N": "7"}
	_, err := Load([]byte("interval: ~\ncount: ${N}\nlabels: {x: \"${MISSING:-d}\"}\n"), &s, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil || s.Interval.D().Seconds() != 5 || s.Count != 7 || s.Labels["x"] != "d" {
		t.Fatalf("%v %+v", err, s)
	}
}

func TestDecodeANodeKeepsItsLines(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("\n\ninner:\n  timeout: x\n"), &n); err != nil {
		t.Fatal(err)
	}
	var s section
	err := Decode(&n, &s, "probes[0].tcp")
	if err == nil || err.Error() != `probes[0].tcp.inner.timeout: invalid duration "x" (use e.g. 500ms, 5s, 1m, 1h, 1d) (line 4)` {
		t.Fatalf("got %v", err)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"interval", "timeout", "maxBytes"}
	for key, want := range map[string]string{
		"intervall": `(did you mean "interval"?)`, "intervl": `(did you mean "interval"?)`, "Interval": `(did you mean "interval"?)`,
		"max_bytes": `(did you mean "maxBytes"?)`, "zzz": "(known: interval, timeout, maxBytes)",
	} {
		if got := Suggest(key, known); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
}

// An unknown key inside a flow mapping that shares its line with a known
// key of the same name further out is reported where it is (yaml names
// only the line).
func TestUnknownKeyOnASharedLineIsPlacedByItsParent(t *testing.T) {
	s := section{}
	_, err := Load([]byte("{count: 1, inner: {timeout: 1s, count: 2}}\n"), &s, nil)
	if err == nil || err.Error() != `inner.count: unknown field (known: timeout) (line 1)` {
		t.Fatalf("got %v", err)
	}
}
