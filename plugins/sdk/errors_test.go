package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"
)

func TestDecodeConfig(t *testing.T) {
	type inner struct {
		Port int `json:"port"`
	}
	type conf struct {
		URL    string `json:"url"`
		Inner  inner  `json:"inner"`
		Tries  int    `json:"tries"`
		Silent bool   `json:"silent"`
	}
	cases := []struct {
		in      string
		want    conf
		wantErr string
	}{
		{in: ``, want: conf{Tries: 3}},
		{in: `null`, want: conf{Tries: 3}},
		{in: `{"url":"http://x","inner":{"port":8}}`, want: conf{URL: "http://x", Inner: inner{8}, Tries: 3}},
		{in: `{"url":"http://x","bogus":1}`, wantErr: "bogus: unknown field"},
		{in: `{"inner":{"port":"eight"}}`, wantErr: "inner.port: cannot use a JSON string as int"},
		{in: `{"url":1}`, wantErr: "url: cannot use a JSON number as string"},
		{in: `{"url":"a"} {}`, wantErr: "config must be a single JSON value"},
		{in: `{`, wantErr: "invalid config: unexpected EOF"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			c := conf{Tries: 3}
			err := DecodeConfig(json.RawMessage(tc.in), &c)
			if tc.wantErr != "" {
				var fe *FieldError
				if err == nil || err.Error() != tc.wantErr || !errors.As(err, &fe) {
					t.Fatalf("err = %v, want FieldError %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c != tc.want {
				t.Fatalf("got %+v, %v; want %+v", c, err, tc.want)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("no")
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) != nil")
	}
	p := fmt.Errorf("attempt 2: %w", Permanent(base))
	if !IsPermanent(p) || !errors.Is(p, base) || IsPermanent(base) {
		t.Fatal("Permanent does not wrap as documented")
	}
}

func TestFieldErrors(t *testing.T) {
	err := errors.Join(Errorf("a", "x %d", 1), errors.Join(errors.New("plain"), fmt.Errorf("wrapped: %w", Errorf("b.c", "y"))))
	got := FieldErrors(err)
	want := []FieldError{{"a", "x 1"}, {"", "plain"}, {"b.c", "y"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FieldErrors = %+v, want %+v", got, want)
	}
}

// The log lines must be in the form go-plugin's host parses (hclog JSON
// with its timestamp layout), or medic would log them as raw text.
func TestLoggerWritesHCLogJSON(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := newLogger(w)
	l.Warn("disk nearly full", "used", 0.93)
	l.Debug("detail")
	w.Close()
	var buf bytes.Buffer
	buf.ReadFrom(r)
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d lines: %s", len(lines), buf.Bytes())
	}
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatal(err)
	}
	if m["@level"] != "warn" || m["@message"] != "disk nearly full" || m["used"] != 0.93 {
		t.Fatalf("line = %s", lines[0])
	}
	if _, err := time.Parse(hclogTime, m["@timestamp"].(string)); err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	if !bytes.Contains(lines[1], []byte(`"@level":"debug"`)) {
		t.Fatalf("debug line = %s", lines[1])
	}
}
