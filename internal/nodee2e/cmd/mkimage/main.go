// Command mkimage writes a single-layer container image holding static
// binaries on an empty base, as a tarball that `ctr images import` (and
// `docker load`) accept. The node E2E set-up (scripts/node-e2e.sh) builds
// its pause and test-peer images with it, without Docker or a registry.
//
//	mkimage -o OUT.tar -tag REF [-user UID[:GID]] [-entrypoint PATH] SRC=DEST...
//
// Each SRC file is stored at DEST (absolute) with mode 0755, owned by root.
// The config names linux/amd64 (an image without a platform is dropped by
// `ctr images import`) and the entrypoint (default: the first DEST).
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	out := fs.String("o", "", "output tarball")
	tag := fs.String("tag", "", "image reference, e.g. medic.local/pause:e2e")
	user := fs.String("user", "", "user (UID[:GID]) the entrypoint runs as")
	entry := fs.String("entrypoint", "", "entrypoint (default: the first DEST)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *tag == "" || fs.NArg() == 0 {
		return errors.New("usage: mkimage -o OUT.tar -tag REF [-user UID[:GID]] [-entrypoint PATH] SRC=DEST...")
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return err
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	dirs := map[string]bool{}
	first := ""
	// A fixed time keeps the layer's digest a function of the binaries only.
	mtime := time.Unix(0, 0)
	for _, a := range fs.Args() {
		src, dest, ok := strings.Cut(a, "=")
		if !ok || !path.IsAbs(dest) {
			return fmt.Errorf("%q: want SRC=/absolute/DEST", a)
		}
		if first == "" {
			first = dest
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		for _, d := range parents(dest) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755, ModTime: mtime}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dest[1:], Mode: 0o755, Size: int64(len(b)), ModTime: mtime}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	data := layer.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if *entry == "" {
		*entry = first
	}
	cf.Config = v1.Config{Entrypoint: []string{*entry}, User: *user, Env: []string{"PATH=/"}}
	cf.Created = v1.Time{Time: mtime}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(*out, ref, img)
}

// parents lists dest's parent directories, outermost first ("/a/b/c" → /a, /a/b).
func parents(dest string) []string {
	var ds []string
	for d := path.Dir(dest); d != "/"; d = path.Dir(d) {
		ds = append([]string{d}, ds...)
	}
	return ds
}
