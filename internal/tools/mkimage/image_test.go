package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

var testCreated = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// testOptions uses stand-in binaries (fixed bytes; mkimage copies a binary
// into the image as is, so any file serves) for two platforms.
func testOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	bins := map[string]string{}
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		path := filepath.Join(dir, strings.ReplaceAll(p, "/", "-"))
		if err := os.WriteFile(path, []byte("\x7fELF stand-in for medic "+p), 0o755); err != nil {
			t.Fatal(err)
		}
		bins[p] = path
	}
	return Options{
		Binaries: bins,
		Tag:      "ghcr.io/medic-sidecar/medic:1.2.3",
		Version:  "1.2.3",
		Revision: "0123456789abcdef0123456789abcdef01234567",
		Source:   "https://github.com/medic-sidecar/medic",
		Created:  testCreated,
	}
}

// archive builds the image and its tarball; it returns the index digest and
// the tarball's bytes.
func archive(t *testing.T, o Options) (v1.Hash, []byte) {
	t.Helper()
	idx, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteArchive(&buf, idx, o.Tag, o.Created); err != nil {
		t.Fatal(err)
	}
	return d, buf.Bytes()
}

func TestBuildIsReproducible(t *testing.T) {
	o := testOptions(t)
	d1, a1 := archive(t, o)
	// A second build from copies of the binaries at other paths and with
	// other file times must not differ: only content and Options count.
	o2 := testOptions(t)
	for _, p := range o2.Binaries {
		if err := os.Chtimes(p, time.Now(), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	d2, a2 := archive(t, o2)
	if d1 != d2 {
		t.Fatalf("two builds of the same input: digests %s and %s", d1, d2)
	}
	if !bytes.Equal(a1, a2) {
		t.Fatalf("two builds of the same input: tarballs differ (%d and %d bytes)", len(a1), len(a2))
	}

	// And the digest does depend on what goes in.
	o3 := testOptions(t)
	o3.Created = testCreated.Add(time.Second)
	if d3, _ := archive(t, o3); d3 == d1 {
		t.Fatal("another SOURCE_DATE_EPOCH gave the same digest")
	}
	o4 := testOptions(t)
	if err := os.WriteFile(o4.Binaries["linux/amd64"], []byte("another binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d4, _ := archive(t, o4); d4 == d1 {
		t.Fatal("another binary gave the same digest")
	}
}

// untar unpacks the archive into a directory.
func untar(t *testing.T, data []byte) string {
	t.Helper()
	dir := t.TempDir()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(testCreated) {
			t.Errorf("archive entry %s has mtime %v, want %v", h.Name, h.ModTime, testCreated)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestArchiveIsAnOCILayoutNamedByTag(t *testing.T) {
	o := testOptions(t)
	digest, data := archive(t, o)
	dir := untar(t, data)

	for _, f := range []string{"oci-layout", "index.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d entries, want 1", len(im.Manifests))
	}
	ent := im.Manifests[0]
	if ent.Digest != digest || ent.MediaType != types.OCIImageIndex {
		t.Fatalf("index.json entry %s %s, want the image index %s", ent.MediaType, ent.Digest, digest)
	}
	// ctr images import names the image by io.containerd.image.name.
	if got := ent.Annotations[annotationImageName]; got != o.Tag {
		t.Errorf("%s = %q, want %q", annotationImageName, got, o.Tag)
	}
	if got := ent.Annotations[annotationRefName]; got != "1.2.3" {
		t.Errorf("%s = %q, want the tag 1.2.3", annotationRefName, got)
	}
	idx, err := top.ImageIndex(digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("image index does not validate: %v", err)
	}
}

func TestImageContents(t *testing.T) {
	o := testOptions(t)
	idx, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var plats []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform: ctr images import would filter it out", d.Digest)
		}
		plat := d.Platform.String()
		plats = append(plats, plat)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %s", plat, mt)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS+"/"+cfg.Architecture != plat {
			t.Errorf("%s: config says %s/%s", plat, cfg.OS, cfg.Architecture)
		}
		if !cfg.Created.Time.Equal(testCreated) {
			t.Errorf("%s: created %v", plat, cfg.Created)
		}
		c := cfg.Config
		if strings.Join(c.Entrypoint, " ") != "/medic" || len(c.Cmd) != 0 {
			t.Errorf("%s: entrypoint %q cmd %q", plat, c.Entrypoint, c.Cmd)
		}
		if c.User != "65532:65532" {
			t.Errorf("%s: user %q", plat, c.User)
		}
		want := map[string]string{
			"org.opencontainers.image.version":  "1.2.3",
			"org.opencontainers.image.revision": o.Revision,
			"org.opencontainers.image.source":   o.Source,
		}
		for k, v := range want {
			if c.Labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", plat, k, c.Labels[k], v)
			}
		}

		files := map[string][]byte{}
		modes := map[string]*tar.Header{}
		for _, e := range layerEntries(t, img) {
			files[e.h.Name], modes[e.h.Name] = e.data, e.h
			if !e.h.ModTime.Equal(testCreated) {
				t.Errorf("%s: %s mtime %v", plat, e.h.Name, e.h.ModTime)
			}
		}
		if got, _ := os.ReadFile(o.Binaries[plat]); !bytes.Equal(files["medic"], got) {
			t.Errorf("%s: /medic is not the %s binary", plat, plat)
		}
		if h := modes["medic"]; h == nil || h.Mode != 0o755 || h.Uid != 0 {
			t.Errorf("%s: /medic header %+v", plat, h)
		}
		for name := range files {
			if strings.HasPrefix(name, "bin/") || strings.HasSuffix(name, "/sh") || name == "sh" {
				t.Errorf("%s: image has %s: no shell wanted", plat, name)
			}
		}
		if !strings.Contains(string(files["etc/passwd"]), "nonroot:x:65532:65532:") {
			t.Errorf("%s: /etc/passwd lacks the nonroot user: %q", plat, files["etc/passwd"])
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(files[caFile]) {
			t.Fatalf("%s: /%s has no certificates", plat, caFile)
		}
		if n := bytes.Count(files[caFile], []byte("BEGIN CERTIFICATE")); n < 100 {
			t.Errorf("%s: only %d CA certificates", plat, n)
		}
		if h := modes["tmp/"]; h == nil || h.Mode != 0o1777 {
			t.Errorf("%s: /tmp header %+v", plat, h)
		}
	}
	if strings.Join(plats, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v", plats)
	}
}

func TestRunRejectsMissingFlags(t *testing.T) {
	if code := run([]string{"-out", filepath.Join(t.TempDir(), "x.tar")}); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if code := run([]string{"-binary", "linux", "-out", "x"}); code != 2 {
		t.Fatalf("bad -binary: exit %d, want 2", code)
	}
}

func TestRunWritesTarball(t *testing.T) {
	o := testOptions(t)
	out := filepath.Join(t.TempDir(), "medic.oci.tar")
	args := []string{"-out", out, "-tag", o.Tag, "-version", o.Version, "-revision", o.Revision, "-created", "1796040000",
		"-binary", "linux/amd64=" + o.Binaries["linux/amd64"]}
	if code := run(args); code != 0 {
		t.Fatalf("exit %d", code)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var idx v1.IndexManifest
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "index.json" {
			b, _ := io.ReadAll(tr)
			if err := json.Unmarshal(b, &idx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations[annotationImageName] != o.Tag {
		t.Fatalf("index.json %+v", idx)
	}
}
