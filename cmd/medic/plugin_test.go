package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/medic-sidecar/medic/internal/plugintest"
	"github.com/medic-sidecar/medic/plugins"
)

func TestPluginInfo(t *testing.T) {
	path, err := plugintest.Build(t.TempDir(), plugintest.Module+"/plugins/examples/hello", "hello")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := plugintest.SHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	call := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), args, &out, &errb)
		return code, out.String(), errb.String()
	}

	code, out, errs := call("plugin", "info", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"name:         hello\n", "version:      1.0.0\n", "protocol:     1\n",
		"sha256:       " + sum + "\n", "plugins:\n  hello:\n    path: " + path + "\n    sha256: " + sum + "\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, errs = call("plugin", "info", "--json", path)
	var in plugins.Inspection
	if code != 0 || json.Unmarshal([]byte(out), &in) != nil {
		t.Fatalf("exit %d, output %q, stderr %s", code, out, errs)
	}
	if in.SHA256 != sum || in.Info.Name != "hello" || in.Path != path || in.StartupSeconds <= 0 {
		t.Fatalf("inspection %+v", in)
	}

	if code, _, _ := call("plugin", "info"); code != exitUsage {
		t.Fatalf("no PATH: exit %d, want %d", code, exitUsage)
	}
	if code, _, _ := call("plugin", "bogus"); code != exitUsage {
		t.Fatalf("unknown subcommand: exit %d", code)
	}
	if code, _, errs := call("plugin", "info", path+".missing"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("missing binary: exit %d, %s", code, errs)
	}
	if code, _, errs := call("plugin", "info", "/bin/true"); code != 1 || !strings.Contains(errs, "Unrecognized remote plugin message") {
		t.Fatalf("not a plugin: exit %d, %s", code, errs)
	}
}
