package statefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type file struct {
	Version int            `json:"version"`
	Runs    map[string]int `json:"runs"`
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	var f file
	if _, err := Load(path, 1, &f); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	for body, want := range map[string]string{
		`{"version":1,"runs":{"a":2}}`:   "",
		`{"version":2,"runs":{"a":2}}`:   "unknown version 2 (this medic reads version 1",
		`{"runs":{"a":2}}`:               "unknown version 0",
		`{"version":1,"runs":{"a":`:      "unexpected end of JSON input",
		`{"version":1,"runs":{"a":"x"}}`: "cannot unmarshal string",
	} {
		os.WriteFile(path, []byte(body), 0o600)
		f = file{}
		data, err := Load(path, 1, &f)
		switch {
		case want == "" && (err != nil || f.Runs["a"] != 2):
			t.Errorf("%s: %v %+v", body, err, f)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want %q", body, err, want)
		case string(data) != body:
			t.Errorf("%s: data %q", body, data)
		}
	}
}

func TestMoveAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	now := time.Date(2026, 12, 1, 19, 5, 6, 0, time.UTC)
	os.WriteFile(path, []byte("garbage"), 0o600)
	aside, err := MoveAside(path, []byte("garbage"), now)
	if err != nil || aside != path+".corrupt-20261201T190506Z" {
		t.Fatalf("%q %v", aside, err)
	}
	if b, _ := os.ReadFile(aside); string(b) != "garbage" {
		t.Fatalf("aside holds %q", b)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the original must stay for the caller: %v", err)
	}
	// Unreadable (nil data): the file itself is renamed.
	aside, err = MoveAside(path, nil, now.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("renamed file still in place: %v", err)
	}
	if b, _ := os.ReadFile(aside); string(b) != "garbage" {
		t.Fatalf("renamed file holds %q", b)
	}
	// Aside cannot be written (no such directory): the error says so.
	if _, err := MoveAside(filepath.Join(dir, "none", "state.json"), []byte("x"), now); err == nil {
		t.Fatal("no error writing into a missing directory")
	}
}
