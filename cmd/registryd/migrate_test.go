package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/storage"
)

// fsConfig writes a configuration storing under dir.
func fsConfig(t *testing.T, dir string) string {
	t.Helper()
	return writeFile(t, "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: "+dir+"\n")
}

// pushFS stores an image tagged repo:tag under dir and returns its layer's digest.
func pushFS(t *testing.T, dir, repo, tag string) digest.Digest {
	t.Helper()
	d, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := storage.New(d, storage.Options{Secret: []byte("0123456789abcdef0123")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(b []byte) digest.Digest {
		dg := digest.FromBytes(b)
		if _, err := reg.PutBlob(ctx, repo, bytes.NewReader(b), dg); err != nil {
			t.Fatal(err)
		}
		return dg
	}
	layer := []byte(strings.Repeat("layer of "+repo+tag, 1000))
	cfg := []byte(`{"tag":"` + tag + `"}`)
	m := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + put(cfg).String() + `","size":` + strconv.Itoa(len(cfg)) + `},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + put(layer).String() + `","size":` + strconv.Itoa(len(layer)) + `}]}`
	if _, err := reg.PutManifest(ctx, repo, tag, []byte(m), "", nil); err != nil {
		t.Fatal(err)
	}
	return digest.FromBytes(layer)
}

func migrateReport(t *testing.T, stdout string) storage.MigrateReport {
	t.Helper()
	var rep storage.MigrateReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report %q: %v", stdout, err)
	}
	return rep
}

// TestMigrateCommand runs "registryd migrate" between two filesystem trees: a dry run,
// a copy, a second run that copies nothing, and a corrupt blob that makes the exit
// status 1; REGISTRY_* overrides do not redirect either side.
func TestMigrateCommand(t *testing.T) {
	srcDir, dstDir := t.TempDir(), t.TempDir()
	pushFS(t, srcDir, "team/app", "v1")
	layer := pushFS(t, srcDir, "team/lib", "v2")
	from, to := fsConfig(t, srcDir), fsConfig(t, dstDir)
	env := []string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=" + t.TempDir()}

	code, stdout, stderr := runMigrateCLI(t, env, "migrate", "--from", from, "--to", to, "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, stderr)
	}
	if rep := migrateReport(t, stdout); !rep.DryRun || rep.BlobsCopied != 6 || rep.Tags != 2 {
		t.Errorf("dry run report %+v", rep)
	}
	_ = filepath.WalkDir(dstDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			t.Errorf("dry run wrote %s", p)
		}
		return nil
	})

	code, stdout, stderr = runMigrateCLI(t, env, "migrate", "--from", from, "--to", to, "--repos", "team/*", "--concurrency", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"repositories: 2", "blobs:        6 copied", "tags:         2 copied", "failed:       0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runMigrateCLI(t, env, "migrate", "--from", from, "--to", to, "--json")
	if rep := migrateReport(t, stdout); code != 0 || rep.BlobsCopied != 0 || rep.BlobsSkipped != 6 || rep.TagsSkipped != 2 {
		t.Errorf("second run: exit %d, %+v", code, rep)
	}

	// A corrupt blob in a fresh source: reported, exit 1, not written.
	dst2 := t.TempDir()
	p := filepath.Join(srcDir, "docker/registry/v2/blobs/sha256", layer.Encoded()[:2], layer.Encoded(), "data")
	if err := os.WriteFile(p, []byte("not the layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runMigrateCLI(t, env, "migrate", "--from", from, "--to", fsConfig(t, dst2))
	if code != 1 || !strings.Contains(stdout, "blob "+layer.String()) || !strings.Contains(stderr, "failed") {
		t.Errorf("corrupt blob: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(dst2, strings.TrimPrefix(p, srcDir))); !os.IsNotExist(err) {
		t.Errorf("corrupt blob written: %v", err)
	}
}

func runMigrateCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, env, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestMigrateUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{args: []string{"migrate", "--help"}, code: 0, stdout: "--from OLD.yml --to NEW.yml"},
		{args: []string{"migrate"}, code: 2, stderr: "--from and --to are both required"},
		{args: []string{"migrate", "--from", "a.yml"}, code: 2, stderr: "--from and --to are both required"},
		{args: []string{"migrate", "--from", "a", "--to", "b", "--concurrency", "0"}, code: 2, stderr: "at least 1"},
		{args: []string{"migrate", "--from", "a", "--to", "b", "extra"}, code: 2, stderr: `unexpected argument "extra"`},
		{args: []string{"migrate", "--from", "/no/such.yml", "--to", "/no/other.yml"}, code: 2, stderr: "no such file"},
		{args: []string{"migrate", "--from", "a.yml", "--to", "./a.yml"}, code: 2, stderr: "name the same configuration"},
		{args: []string{"--help"}, code: 0, stdout: "registryd migrate --from OLD.yml"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, nil, tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	s := storage.MigrateStats{Phase: storage.PhaseBlobs, Blobs: 10, Bytes: 100 << 20, BlobsCopied: 4,
		BytesStreamed: 50 << 20, BlobsSkipped: 3}
	got := progressLine(s, 10*time.Second, true)
	for _, want := range []string{"[============            ]", "blobs: 4/10 blobs", "50.0 MiB/100.0 MiB", "5.0 MiB/s", "ETA 10s", "skipped 3"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if plain := progressLine(s, 10*time.Second, false); strings.Contains(plain, "[") {
		t.Errorf("plain line has a bar: %q", plain)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 3 << 30: "3.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
