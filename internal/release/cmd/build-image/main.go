// Command build-image builds registryd's release image without a Docker daemon (see package
// internal/release) and writes it as a `docker load` tarball and/or an OCI image layout, and/or
// pushes it to registries. scripts/build-image.sh runs it.
//
//	build-image -binary dist/registryd -version 1.2.3 [-revision SHA] [-created RFC3339]
//	            [-tag registryd/registryd:1.2.3] [-tarball dist/registryd-image.tar]
//	            [-oci-layout dist/oci] [-push HOST/REPO:TAG ...] [-insecure]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/registryd/registryd/internal/release"
)

// refs collects repeated -push flags.
type refs []string

func (r *refs) String() string     { return strings.Join(*r, ",") }
func (r *refs) Set(s string) error { *r = append(*r, s); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("build-image", flag.ContinueOnError)
	var opts release.Options
	var push refs
	fs.StringVar(&opts.Binary, "binary", "", "static linux registryd binary (required)")
	fs.StringVar(&opts.Version, "version", "", "version for the labels (required)")
	fs.StringVar(&opts.Revision, "revision", "", "source commit")
	fs.StringVar(&opts.Source, "source", "https://github.com/registryd/registryd", "source repository URL")
	fs.StringVar(&opts.CACerts, "ca-certs", release.DefaultCACerts, "CA bundle to copy in")
	fs.StringVar(&opts.Architecture, "arch", "amd64", "architecture of the binary")
	created := fs.String("created", "", "build time, RFC 3339 (default: SOURCE_DATE_EPOCH, else the epoch)")
	tag := fs.String("tag", "", "tag recorded in the tarball and the layout (default registryd/registryd:VERSION)")
	tarPath := fs.String("tarball", "", "write a `docker load` tarball here")
	layoutDir := fs.String("oci-layout", "", "write an OCI image layout here")
	insecure := fs.Bool("insecure", false, "push over plain http")
	fs.Var(&push, "push", "push to this reference (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *tarPath == "" && *layoutDir == "" && len(push) == 0 {
		return errors.New("nothing to do: give -tarball, -oci-layout or -push")
	}
	switch {
	case *created != "":
		t, err := time.Parse(time.RFC3339, *created)
		if err != nil {
			return fmt.Errorf("-created: %w", err)
		}
		opts.Created = t
	case os.Getenv("SOURCE_DATE_EPOCH") != "":
		var sec int64
		if _, err := fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), &sec); err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		opts.Created = time.Unix(sec, 0)
	}
	if *tag == "" {
		*tag = "registryd/registryd:" + strings.ReplaceAll(opts.Version, "+", "_")
	}
	img, err := release.Build(opts)
	if err != nil {
		return err
	}
	dgst, err := img.Digest()
	if err != nil {
		return err
	}
	if *tarPath != "" {
		if err := release.WriteTarball(img, *tag, *tarPath); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "build-image: wrote %s (%s)\n", *tarPath, *tag)
	}
	if *layoutDir != "" {
		if err := release.WriteLayout(img, *tag, *layoutDir); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "build-image: wrote OCI layout %s\n", *layoutDir)
	}
	for _, ref := range push {
		if err := release.Push(img, ref, *insecure, nil); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "build-image: pushed %s\n", ref)
	}
	fmt.Println(dgst)
	return nil
}
