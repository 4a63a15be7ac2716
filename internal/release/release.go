// Package release builds registryd's release image without a Docker daemon: one layer on an
// empty (scratch) base holding the static binary, an /etc/passwd and /etc/group with the
// nonroot user 65532, a world-writable /tmp, a home directory and the CA certificates, with
// OCI media types, OCI labels, the nonroot user and the version stamped in the config. It writes
// the image as a tarball `docker load` reads, as an OCI image layout, or pushes it to a registry.
//
// Who may import it: internal/release/cmd/build-image and tests. The registryd binary does not
// (release tooling stays out of it).
package release

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonrootUID is the user (and group) the image runs as.
const NonrootUID = 65532

// BinaryPath is where the registryd binary lives in the image; it is the entrypoint.
const BinaryPath = "/registryd"

// DefaultCACerts is Debian's CA bundle, copied into the image at the same path.
const DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"

// Options describes the image to build. Binary and Version are required.
type Options struct {
	// Binary is the path of a static linux registryd binary.
	Binary string
	// Version is stamped in the labels (the binary carries its own, from -ldflags).
	Version string
	// Revision is the source commit (org.opencontainers.image.revision), optional.
	Revision string
	// Created is the build time; the zero value means the Unix epoch, for reproducible builds.
	// It is also the modification time of every file in the layer.
	Created time.Time
	// CACerts is the CA bundle to copy in; empty means DefaultCACerts.
	CACerts string
	// OS and Architecture of the binary (default linux, amd64).
	OS, Architecture string
	// Source is the URL of the source repository (org.opencontainers.image.source), optional.
	Source string
}

// Build assembles the image.
func Build(opts Options) (v1.Image, error) {
	if opts.Binary == "" || opts.Version == "" {
		return nil, errors.New("release: Binary and Version are required")
	}
	if opts.CACerts == "" {
		opts.CACerts = DefaultCACerts
	}
	if opts.OS == "" {
		opts.OS = "linux"
	}
	if opts.Architecture == "" {
		opts.Architecture = "amd64"
	}
	created := opts.Created.UTC()
	if created.IsZero() {
		created = time.Unix(0, 0).UTC()
	}
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("release: binary: %w", err)
	}
	certs, err := os.ReadFile(opts.CACerts)
	if err != nil {
		return nil, fmt.Errorf("release: CA certificates: %w", err)
	}
	layerTar, err := rootfs(bin, certs, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("release: layer: %w", err)
	}
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "registryd internal/release: static binary, /etc/passwd, /tmp, CA certificates",
			Comment:   "registryd " + opts.Version,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "registryd",
		"org.opencontainers.image.description": "OCI Distribution v1.1 registry over object storage",
		"org.opencontainers.image.version":     opts.Version,
		"org.opencontainers.image.created":     created.Format(time.RFC3339),
		"org.opencontainers.image.licenses":    "Apache-2.0",
	}
	if opts.Revision != "" {
		labels["org.opencontainers.image.revision"] = opts.Revision
	}
	if opts.Source != "" {
		labels["org.opencontainers.image.source"] = opts.Source
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = opts.OS, opts.Architecture
	cf.Created = v1.Time{Time: created}
	cf.Author = "registryd"
	cf.Config.User = fmt.Sprintf("%d:%d", NonrootUID, NonrootUID)
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Cmd = []string{"serve"}
	cf.Config.WorkingDir = "/home/nonroot"
	cf.Config.Env = []string{"PATH=/", "SSL_CERT_FILE=" + DefaultCACerts}
	cf.Config.ExposedPorts = map[string]struct{}{"5000/tcp": {}, "5001/tcp": {}}
	cf.Config.Labels = labels
	cf.Config.StopSignal = "SIGTERM"
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	return img, nil
}

// rootfs returns the layer: a tar of the image's whole filesystem, entries in a fixed order
// with fixed times and owners, so the same inputs give the same digest.
func rootfs(bin, certs []byte, mtime time.Time) ([]byte, error) {
	type entry struct {
		name string
		mode int64
		uid  int
		data []byte
		dir  bool
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonrootUID, NonrootUID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonrootUID)
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/ssl/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/", mode: 0o755, dir: true},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: certs},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: NonrootUID, dir: true},
		{name: "registryd", mode: 0o755, data: bin},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: mtime,
			Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(e.data)),
		}
		if e.uid == NonrootUID {
			h.Uname, h.Gname = "nonroot", "nonroot"
		} else {
			h.Uname, h.Gname = "root", "root"
		}
		if e.dir {
			h.Typeflag, h.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("release: layer %s: %w", path.Clean(e.name), err)
		}
		if !e.dir {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("release: layer %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("release: layer: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteTarball writes img as a tarball `docker load` reads, tagged ref.
func WriteTarball(img v1.Image, ref, file string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("release: tag %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("release: write %s: %w", file, err)
	}
	return nil
}

// WriteLayout writes img into the OCI image layout at dir (created if needed), annotated with
// ref as its org.opencontainers.image.ref.name.
func WriteLayout(img v1.Image, ref, dir string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("release: layout %s: %w", dir, err)
		}
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return fmt.Errorf("release: layout %s: %w", dir, err)
	}
	return nil
}

// Push pushes img to ref (a tag or repository reference). insecure allows plain http, for a
// registry on the loopback. Credentials come from the Docker config (~/.docker/config.json).
func Push(img v1.Image, ref string, insecure bool, rt http.RoundTripper) error {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return fmt.Errorf("release: reference %q: %w", ref, err)
	}
	ropts := []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if rt != nil {
		ropts = append(ropts, remote.WithTransport(rt))
	}
	if err := remote.Write(r, img, ropts...); err != nil {
		return fmt.Errorf("release: push %s: %w", ref, err)
	}
	return nil
}
