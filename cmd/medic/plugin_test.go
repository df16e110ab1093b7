package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/medic-sidecar/medic/internal/plugintest"
	"github.com/medic-sidecar/medic/plugins"
)

func TestPluginInfo(t *testing.T) {
	before := plugintest.Children(os.Getpid())
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

	// plugin validate: binaries checked, each action's config validated by its plugin.
	dir := t.TempDir()
	write := func(sha, greeting string) string {
		f := filepath.Join(dir, "medic.yaml")
		doc := "plugins:\n  hello: {path: " + path + ", sha256: " + sha + "}\n" +
			"actions:\n  greet:\n    plugin: {name: hello, config: {greeting: " + greeting + "}}\n"
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if code, out, errs := call("plugin", "validate", "--config", write(sum, "hi")); code != 0 || !strings.Contains(out, "plugins valid (1 plugins)") {
		t.Fatalf("valid config: exit %d, %s%s", code, out, errs)
	}
	code, _, errs = call("plugin", "validate", "--config", write(sum, "42"))
	if code != exitUsage || !strings.Contains(errs, "actions.greet.plugin.config.greeting: cannot use a JSON number as string") {
		t.Fatalf("bad plugin config: exit %d, %s", code, errs)
	}
	code, _, errs = call("plugin", "validate", "--config", write(strings.Repeat("0", 64), "hi"))
	if code != exitUsage || !strings.Contains(errs, "plugins.hello.sha256: "+path+" has sha256 "+sum) {
		t.Fatalf("wrong sha256: exit %d, %s", code, errs)
	}
	if kids := newChildren(before); len(kids) != 0 {
		t.Fatalf("plugin processes left: %v", kids)
	}
}
