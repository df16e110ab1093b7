package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/x509roots/fallback/bundle"
)

// Image layout: one layer on an empty base.
const (
	// UID/GID of the image's user, "nonroot" as in distroless.
	nonRootID = 65532
	// entrypoint is where the medic binary lives in the image.
	entrypoint = "/medic"
	// caFile is where Go (and most TLS stacks) look for the system roots on Linux.
	caFile = "etc/ssl/certs/ca-certificates.crt"

	// annotationImageName is containerd's annotation naming the image on import
	// (ctr images import, also read by docker load).
	annotationImageName = "io.containerd.image.name"
	// annotationRefName is the OCI layout's name of an image: its tag.
	annotationRefName = "org.opencontainers.image.ref.name"
)

// Options describe one image build. Everything that goes into the image comes
// from here, so two builds with the same Options give the same digest.
type Options struct {
	// Binaries maps a platform ("linux/amd64") to a static medic binary.
	Binaries map[string]string
	// Tag is the full reference the image is imported as, e.g.
	// ghcr.io/medic-sidecar/medic:0.1.0.
	Tag string
	// Version, Revision and Source become the org.opencontainers.image.* labels.
	Version, Revision, Source string
	// Created is every timestamp in the image (config, history, file mtimes):
	// SOURCE_DATE_EPOCH, the commit time.
	Created time.Time
	// CACerts is the PEM bundle put at /etc/ssl/certs/ca-certificates.crt.
	CACerts []byte
}

// CABundle returns the PEM bundle of the NSS roots shipped in the pinned
// golang.org/x/crypto/x509roots/fallback module: the same bytes on every
// build machine, unlike the build host's /etc/ssl. Roots that carry a
// constraint a PEM file cannot express (distrust after a date) are left out.
func CABundle() []byte {
	var b bytes.Buffer
	for r := range bundle.Roots() {
		if r.Constraint != nil {
			continue
		}
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: r.Certificate})
	}
	return b.Bytes()
}

// file is one entry of the image's only layer.
type file struct {
	name string
	mode int64
	uid  int
	data []byte
	dir  bool
}

// rootfs lists the layer's entries: the binary, the CA bundle, passwd/group
// naming the non-root user, and a world-writable /tmp. No shell, no libc.
func rootfs(binary, ca []byte) []file {
	return []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: caFile, mode: 0o644, data: ca},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: nonRootID, dir: true},
		{name: "medic", mode: 0o755, data: binary},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
}

// layerTar writes the entries as an uncompressed tar with fixed times and
// owners, in a fixed order.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{
			Name:    f.name,
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.uid,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// parsePlatform splits "linux/amd64" or "linux/arm64/v8".
func parsePlatform(s string) (v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return v1.Platform{}, err
	}
	if p.OS == "" || p.Architecture == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch", s)
	}
	return *p, nil
}

// buildImage makes the single-platform image around one binary.
func buildImage(o Options, plat v1.Platform, binary []byte) (v1.Image, error) {
	raw, err := layerTar(rootfs(binary, o.CACerts), o.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   created,
			CreatedBy: "scripts/image.sh (internal/tools/mkimage)",
			Comment:   "medic " + o.Version,
		},
	})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Created = created
	cfg.OS = plat.OS
	cfg.Architecture = plat.Architecture
	cfg.Variant = plat.Variant
	cfg.Author = ""
	cfg.Config = v1.Config{
		Entrypoint: []string{entrypoint},
		User:       fmt.Sprintf("%d:%d", nonRootID, nonRootID),
		WorkingDir: "/",
		Env: []string{
			"PATH=/",
			"SSL_CERT_FILE=/" + caFile,
		},
		Labels: labels(o),
	}
	return mutate.ConfigFile(img, cfg)
}

func labels(o Options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "medic",
		"org.opencontainers.image.description": "Self-healing supervisor sidecar for SPIRE agents and KubeArmor relays",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Revision,
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
}

// Build returns the OCI image index holding one image per platform, in
// platform order.
func Build(o Options) (v1.ImageIndex, error) {
	if len(o.Binaries) == 0 {
		return nil, fmt.Errorf("no binaries")
	}
	if o.Created.IsZero() {
		return nil, fmt.Errorf("no creation time (SOURCE_DATE_EPOCH)")
	}
	if len(o.CACerts) == 0 {
		o.CACerts = CABundle()
	}
	plats := slices.Sorted(maps.Keys(o.Binaries))
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, ps := range plats {
		plat, err := parsePlatform(ps)
		if err != nil {
			return nil, err
		}
		bin, err := os.ReadFile(o.Binaries[ps])
		if err != nil {
			return nil, err
		}
		img, err := buildImage(o, plat, bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ps, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &plat},
		})
	}
	return idx, nil
}

// WriteArchive writes idx as an OCI image layout in a tar archive (what
// `ctr images import`, `docker load` and `crane` read), naming it o.Tag.
// Archive entries have fixed times and owners, so the archive itself is
// reproducible, not only the digest.
func WriteArchive(w io.Writer, idx v1.ImageIndex, tag string, mtime time.Time) error {
	dir, err := os.MkdirTemp("", "mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ref := tag
	if i := strings.LastIndex(tag, ":"); i > strings.LastIndex(tag, "/") {
		ref = tag[i+1:]
	}
	top := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add: idx,
		Descriptor: v1.Descriptor{Annotations: map[string]string{
			annotationImageName: tag,
			annotationRefName:   ref,
		}},
	})
	if _, err := layout.Write(dir, top); err != nil {
		return err
	}
	var names []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(names)
	tw := tar.NewWriter(w)
	for _, p := range names {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Mode: 0o644, Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Size = tar.TypeReg, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}
