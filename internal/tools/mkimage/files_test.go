package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// mkimage files: the image the node E2E set-up imports into containerd —
// the binaries at their paths, the config it runs them with, and the same
// bytes from the same binaries.
func TestFilesImage(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "spire-agent")
	helper := filepath.Join(dir, "helper")
	os.WriteFile(agent, []byte("agent binary"), 0o644)
	os.WriteFile(helper, []byte("helper binary"), 0o644)
	out := filepath.Join(dir, "a.tar")
	args := []string{"-o", out, "-tag", "medic.local/spire-agent:e2e", "-user", "65535:65535",
		agent + "=/opt/spire/bin/spire-agent", helper + "=/opt/spire/helper"}
	if err := runFiles(args); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(out)
	if err := runFiles(args); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(first, again) {
		t.Fatal("two builds of the same binaries differ")
	}

	tag, _ := name.NewTag("medic.local/spire-agent:e2e")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("not an image tarball naming its tag: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !slices.Equal(cf.Config.Entrypoint, []string{"/opt/spire/bin/spire-agent"}) ||
		cf.Config.User != "65535:65535" || !slices.Equal(cf.Config.Env, []string{"PATH=/"}) || cf.Created.Unix() != 0 {
		t.Fatalf("config %+v (%s/%s, created %v)", cf.Config, cf.OS, cf.Architecture, cf.Created)
	}
	var got []string
	for _, e := range layerEntries(t, img) {
		if h := e.h; h.Mode != 0o755 || h.Uid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: mode %o uid %d mtime %v", h.Name, h.Mode, h.Uid, h.ModTime)
		}
		got = append(got, e.h.Name+"="+string(e.data))
	}
	want := []string{"opt/=", "opt/spire/=", "opt/spire/bin/=", "opt/spire/bin/spire-agent=agent binary", "opt/spire/helper=helper binary"}
	if !slices.Equal(got, want) {
		t.Fatalf("layer %q, want %q", got, want)
	}

	// -entrypoint overrides the first file; bad arguments are refused.
	if err := runFiles([]string{"-o", out, "-tag", "medic.local/x:e2e", "-entrypoint", "/opt/spire/helper", agent + "=/opt/spire/bin/spire-agent", helper + "=/opt/spire/helper"}); err != nil {
		t.Fatal(err)
	}
	x, _ := name.NewTag("medic.local/x:e2e")
	img, _ = tarball.ImageFromPath(out, &x)
	if cf, err := img.ConfigFile(); err != nil || cf.Config.Entrypoint[0] != "/opt/spire/helper" {
		t.Fatalf("entrypoint: %v %v", cf, err)
	}
	for _, bad := range [][]string{
		{"-o", out, "-tag", "x:y", agent + "=relative/path"},
		{"-o", out, "-tag", "x:y", agent},
		{"-o", out, "-tag", "x:y"},
		{"-tag", "x:y", agent + "=/a"},
		{"-o", out, "-tag", "x:y", filepath.Join(dir, "missing") + "=/a"},
	} {
		if err := runFiles(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// entry is one file of a layer.
type entry struct {
	h    *tar.Header
	data []byte
}

// layerEntries reads the entries of img's only layer, in order.
func layerEntries(t *testing.T, img v1.Image) []entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []entry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, entry{h, b})
	}
}
