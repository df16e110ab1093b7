// Command mkimage builds medic's OCI image tarball from prebuilt static
// binaries with go-containerregistry: no Docker daemon, no registry.
// scripts/image.sh compiles the binaries and calls it; see docs/install.md.
//
//	mkimage -out dist/medic.oci.tar -tag ghcr.io/medic-sidecar/medic:0.1.0 \
//	        -version 0.1.0 -revision COMMIT -created SOURCE_DATE_EPOCH \
//	        -binary linux/amd64=bin/medic-linux-amd64 [-binary linux/arm64=...]
//
// It prints the tarball's path, the image digest (of the OCI image index,
// what `ctr images ls` shows) and sizes.
//
// `mkimage files` writes an image of any static binaries at any paths (the
// node E2E set-up's pause and test-peer images); see runFiles.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// binaryFlags collects repeated -binary platform=path flags.
type binaryFlags map[string]string

func (b binaryFlags) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaryFlags) Set(s string) error {
	plat, path, ok := strings.Cut(s, "=")
	if !ok || plat == "" || path == "" {
		return fmt.Errorf("want platform=path, got %q", s)
	}
	if _, err := parsePlatform(plat); err != nil {
		return err
	}
	b[plat] = path
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "files" {
		if err := runFiles(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "mkimage:", err)
			os.Exit(2)
		}
		return
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fl := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	bins := binaryFlags{}
	var o Options
	var out, created string
	fl.Var(bins, "binary", "platform=path of a static medic binary (repeatable)")
	fl.StringVar(&out, "out", "", "tarball to write")
	fl.StringVar(&o.Tag, "tag", "", "image reference, e.g. ghcr.io/medic-sidecar/medic:0.1.0")
	fl.StringVar(&o.Version, "version", "", "org.opencontainers.image.version")
	fl.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (commit)")
	fl.StringVar(&o.Source, "source", "https://github.com/medic-sidecar/medic", "org.opencontainers.image.source")
	fl.StringVar(&created, "created", os.Getenv("SOURCE_DATE_EPOCH"), "image timestamp, Unix seconds (default $SOURCE_DATE_EPOCH)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if out == "" || o.Tag == "" || o.Version == "" || created == "" || len(bins) == 0 {
		fmt.Fprintln(os.Stderr, "mkimage: -out, -tag, -version, -created (or SOURCE_DATE_EPOCH) and -binary are required")
		return 2
	}
	sec, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkimage: -created %q: %v\n", created, err)
		return 2
	}
	o.Created = time.Unix(sec, 0).UTC()
	o.Binaries = bins
	if err := build(o, out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		return 1
	}
	return 0
}

func build(o Options, out string) error {
	idx, err := Build(o)
	if err != nil {
		return err
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(out + ".tmp")
	w := bufio.NewWriter(f)
	if err := WriteArchive(w, idx, o.Tag, o.Created); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	st, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("tarball: %s\n", out)
	fmt.Printf("tag: %s\n", o.Tag)
	fmt.Printf("version: %s\n", o.Version)
	fmt.Printf("digest: %s\n", digest)
	fmt.Printf("tarball-bytes: %d\n", st.Size())
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		c, u, err := sizes(img)
		if err != nil {
			return err
		}
		fmt.Printf("image %s: manifest %s, layers %d bytes compressed, %d bytes uncompressed\n", d.Platform, d.Digest, c, u)
	}
	return nil
}

// sizes sums an image's layers, compressed (what a pull transfers) and
// uncompressed (what it occupies unpacked).
func sizes(img v1.Image) (compressed, uncompressed int64, err error) {
	layers, err := img.Layers()
	if err != nil {
		return 0, 0, err
	}
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return 0, 0, err
		}
		compressed += n
		rc, err := l.Uncompressed()
		if err != nil {
			return 0, 0, err
		}
		m, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return 0, 0, err
		}
		uncompressed += m
	}
	return compressed, uncompressed, nil
}
