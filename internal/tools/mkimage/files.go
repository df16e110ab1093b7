package main

import (
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

// runFiles is `mkimage files`: a single-layer image of static binaries at
// any paths on an empty base, as a tarball that `ctr images import` (and
// `docker load`) accept. The node E2E set-up (scripts/node-e2e.sh) builds
// its pause and test-peer images with it.
//
//	mkimage files -o OUT.tar -tag REF [-user UID[:GID]] [-entrypoint PATH] SRC=DEST...
//
// Each SRC file is stored at DEST (absolute) with mode 0755, owned by
// root, under its parent directories. The config names linux/GOARCH (an
// image without a platform is dropped by `ctr images import`), PATH=/ and
// the entrypoint (default: the first DEST). Every time is the Unix epoch,
// so the digest is a function of the binaries only.
func runFiles(args []string) error {
	fs := flag.NewFlagSet("mkimage files", flag.ContinueOnError)
	out := fs.String("o", "", "output tarball")
	tag := fs.String("tag", "", "image reference, e.g. medic.local/pause:e2e")
	user := fs.String("user", "", "user (UID[:GID]) the entrypoint runs as")
	entry := fs.String("entrypoint", "", "entrypoint (default: the first DEST)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *tag == "" || fs.NArg() == 0 {
		return errors.New("usage: mkimage files -o OUT.tar -tag REF [-user UID[:GID]] [-entrypoint PATH] SRC=DEST...")
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return err
	}
	files, first, err := filesLayer(fs.Args())
	if err != nil {
		return err
	}
	if *entry == "" {
		*entry = first
	}
	img, err := filesImage(files, v1.Config{Entrypoint: []string{*entry}, User: *user, Env: []string{"PATH=/"}})
	if err != nil {
		return err
	}
	return tarball.WriteToFile(*out, ref, img)
}

// filesLayer reads each SRC=DEST and lists the layer's entries: each
// DEST's parent directories once, outermost first, then the file.
func filesLayer(args []string) (files []file, first string, err error) {
	dirs := map[string]bool{}
	for _, a := range args {
		src, dest, ok := strings.Cut(a, "=")
		if !ok || !path.IsAbs(dest) {
			return nil, "", fmt.Errorf("%q: want SRC=/absolute/DEST", a)
		}
		if first == "" {
			first = dest
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, "", err
		}
		for _, d := range parents(dest) {
			if !dirs[d] {
				dirs[d] = true
				files = append(files, file{name: d[1:] + "/", mode: 0o755, dir: true})
			}
		}
		files = append(files, file{name: dest[1:], mode: 0o755, data: b})
	}
	return files, first, nil
}

// filesImage is files as the one layer of an image for linux/GOARCH with
// config c, every time the Unix epoch.
func filesImage(files []file, c v1.Config) (v1.Image, error) {
	epoch := time.Unix(0, 0)
	data, err := layerTar(files, epoch)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = c
	cf.Created = v1.Time{Time: epoch}
	return mutate.ConfigFile(img, cf)
}

// parents lists dest's parent directories, outermost first ("/a/b/c" → /a, /a/b).
func parents(dest string) []string {
	var ds []string
	for d := path.Dir(dest); d != "/"; d = path.Dir(d) {
		ds = append([]string{d}, ds...)
	}
	return ds
}
