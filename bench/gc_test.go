package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/internal/testenv"
	"github.com/registryd/registryd/storage"
)

// TestBenchGC times one garbage collection of the same filesystem store by `registryd gc`
// (online: the registry could keep serving) and by CNCF Distribution's offline `registry
// garbage-collect --delete-untagged`, each on its own copy, and counts what each leaves.
// The store: 200 repositories, each with 5 tagged images and 5 untagged ones (3 layers:
// one from a pool of 20 shared across repositories, two of its own), and a cosign-style
// signature (a referrer) of one tagged image.
// Run: REGISTRYD_BENCH=1 go test ./bench -run TestBenchGC -v -timeout 30m
func TestBenchGC(t *testing.T) {
	if os.Getenv("REGISTRYD_BENCH") == "" {
		t.Skip("benchmark: set REGISTRYD_BENCH=1 (see bench/README.md)")
	}
	const repos, tagged, untagged = 200, 5, 5
	template := t.TempDir()
	populateGCStore(t, template, repos, tagged, untagged)
	time.Sleep(2200 * time.Millisecond) // past registryd's grace period (1ms) in whole seconds
	rounds := benchRounds()
	type result struct {
		took           []time.Duration
		blobs, revs    int
		sigs           int
		blobsB, revsB  int
		summary, flags string
	}
	res := map[string]*result{"registryd": {flags: "registryd gc (graceperiod 1ms)"}, "distribution": {flags: "registry garbage-collect --delete-untagged"}}
	for range rounds {
		for _, who := range []string{"registryd", "distribution"} {
			dir := filepath.Join(t.TempDir(), who)
			if out, err := exec.Command("cp", "-a", template, dir).CombinedOutput(); err != nil {
				t.Fatalf("copy: %v %s", err, out)
			}
			cfg := filepath.Join(t.TempDir(), "config.yml")
			yml := fmt.Sprintf("version: 0.1\nlog: {level: error}\nstorage:\n  filesystem:\n    rootdirectory: %s\n", dir)
			var cmd *exec.Cmd
			if who == "registryd" {
				// Each copy is a bucket never collected: a short announce period, so
				// the time is the collection's, not the first run's one-time wait.
				yml += "  gc: {graceperiod: 1ms, announce: 100ms}\n"
				cmd = exec.Command(testenv.RegistrydBinary(t), "gc", "-c", cfg)
			} else {
				cmd = exec.Command(testenv.Tool(t, "registry"), "garbage-collect", "--delete-untagged", "--quiet", cfg)
				cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
			}
			if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
				t.Fatal(err)
			}
			r := res[who]
			r.blobsB, r.revsB = countStore(t, dir)
			_ = exec.Command("sync").Run()
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s: %v\n%s", who, err, out.String())
			}
			r.took = append(r.took, time.Since(start))
			r.blobs, r.revs = countStore(t, dir)
			r.sigs = countSignatures(t, dir)
			if who == "registryd" {
				r.summary = strings.TrimSpace(out.String())
			}
		}
	}
	median := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Garbage collection: registryd gc vs CNCF Distribution garbage-collect\n\n")
	fmt.Fprintf(&b, "Command: `REGISTRYD_BENCH=1 go test ./bench -run TestBenchGC -v -timeout 30m` (%d rounds, median; %s).\n\n", rounds, time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "One filesystem store, copied for each tool and round: %d repositories, each with %d tagged and %d untagged images "+
		"(config + 3 layers: one from a pool of 20 shared across repositories, two of its own) and a signature (a referrer, "+
		"untagged) of one tagged image. Before: %d blob data files, %d manifest revision links.\n\n",
		repos, tagged, untagged, res["registryd"].blobsB, res["registryd"].revsB)
	fmt.Fprintf(&b, "| tool | median time | blobs left | revision links left | signatures of tagged images left |\n|---|---|---|---|---|\n")
	for _, who := range []string{"registryd", "distribution"} {
		r := res[who]
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d of %d |\n", r.flags, median(r.took).Round(time.Millisecond), r.blobs, r.revs, r.sigs, repos)
	}
	fmt.Fprintf(&b, "\nregistryd's summary line: `%s`\n\n", res["registryd"].summary)
	b.WriteString("Distribution's `--delete-untagged` deletes the untagged signatures of tagged images (it never reads `subject`); " +
		"registryd keeps them (a referrer of a kept manifest is kept). Distribution must run with the registry stopped or read-only; " +
		"registryd runs beside the serving replicas (one at a time, under its lease) and makes the extra calls its online safety " +
		"needs (re-verification of each delete, sweep batches).\n")
	if err := os.WriteFile(filepath.Join("results", "gc.md"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}

// populateGCStore writes the benchmark's store through registryd's storage package.
func populateGCStore(t *testing.T, dir string, repos, tagged, untagged int) {
	ctx := context.Background()
	d, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := storage.New(d, storage.Options{Secret: []byte("bench-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	blob := func(repo, content string) map[string]any {
		dg := digest.FromString(content)
		if _, err := reg.PutBlob(ctx, repo, strings.NewReader(content), dg); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg, "size": len(content)}
	}
	manifest := func(repo, ref string, m map[string]any) map[string]any {
		m["schemaVersion"] = 2
		m["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
		body, _ := json.Marshal(m)
		dg := digest.FromBytes(body)
		if ref == "" {
			ref = dg.String()
		}
		if _, err := reg.PutManifest(ctx, repo, ref, body, "", nil); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": dg, "size": len(body)}
	}
	for i := range repos {
		repo := fmt.Sprintf("team%d/app%d", i%10, i)
		var first map[string]any
		for j := range tagged + untagged {
			cfg := blob(repo, fmt.Sprintf("config %d %d", i, j))
			cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
			layers := []any{blob(repo, fmt.Sprintf("shared layer %d", (i+j)%20)), blob(repo, fmt.Sprintf("layer %d %d a", i, j)), blob(repo, fmt.Sprintf("layer %d %d b", i, j))}
			ref := ""
			if j < tagged {
				ref = fmt.Sprintf("v%d", j)
			}
			desc := manifest(repo, ref, map[string]any{"config": cfg, "layers": layers})
			if j == 0 {
				first = desc
			}
		}
		sigCfg := blob(repo, "{}")
		sigCfg["mediaType"] = "application/vnd.dev.cosign.artifact.sig.v1+json"
		manifest(repo, "", map[string]any{"config": sigCfg, "layers": []any{blob(repo, fmt.Sprintf("signature of %d", i))}, "subject": first})
	}
}

// countStore counts blob data files and manifest revision links.
func countStore(t *testing.T, dir string) (blobs, revs int) {
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case e.Name() == "data" && strings.Contains(p, "/blobs/"):
			blobs++
		case e.Name() == "link" && strings.Contains(p, "/_manifests/revisions/"):
			revs++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return blobs, revs
}

// countSignatures counts the signature manifests still held (their bytes contain the
// cosign media type).
func countSignatures(t *testing.T, dir string) int {
	n := 0
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Name() != "link" || !strings.Contains(p, "/_manifests/revisions/") {
			return nil
		}
		hex := filepath.Base(filepath.Dir(p))
		b, err := os.ReadFile(filepath.Join(dir, "docker/registry/v2/blobs/sha256", hex[:2], hex, "data"))
		if err == nil && bytes.Contains(b, []byte("cosign.artifact.sig")) {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
