package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/registryd/registryd/internal/testenv"
)

// gcStorage adds an online GC section running every interval with a short grace period
// to a storage section.
func gcStorage(storage string, interval, grace time.Duration) string {
	return storage + fmt.Sprintf("  gc:\n    enabled: true\n    interval: %s\n    graceperiod: %s\n    announce: 1s\n", interval, grace)
}

// gcWorkload pushes, re-tags and deletes from several clients on random replicas until
// the deadline: images sharing layers from a small pool (across repositories and tags),
// indexes, untagged images, tag deletions. It returns how many operations succeeded and
// failed (a push may fail cleanly when the collector swept a blob the client had found).
func gcWorkload(t *testing.T, rs []*testenv.Registryd, clients int, d time.Duration) (ok, failed int64) {
	t.Helper()
	var pool []v1.Layer
	for range 6 {
		l, err := random.Layer(64<<10, types.DockerLayer)
		if err != nil {
			t.Fatal(err)
		}
		pool = append(pool, l)
	}
	var nOK, nFail atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			image := func() v1.Image {
				own, _ := random.Layer(16<<10, types.DockerLayer)
				img, err := mutate.AppendLayers(empty.Image, pool[rng.IntN(len(pool))], pool[rng.IntN(len(pool))], own)
				if err != nil {
					t.Error(err)
				}
				return img
			}
			for time.Now().Before(deadline) {
				host := rs[rng.IntN(len(rs))].Host
				repo := fmt.Sprintf("%s/gc/r%d", host, rng.IntN(3))
				tag := fmt.Sprintf("t%d", rng.IntN(5))
				ref, _ := name.ParseReference(repo + ":" + tag)
				var err error
				switch op := rng.IntN(10); {
				case op < 5:
					err = remote.Write(ref, image())
				case op < 7:
					err = remote.Delete(ref)
					if err != nil && strings.Contains(err.Error(), "MANIFEST_UNKNOWN") {
						err = nil
					}
				case op < 9:
					idx := mutate.AppendManifests(empty.Index,
						mutate.IndexAddendum{Add: image(), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
						mutate.IndexAddendum{Add: image(), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
					err = remote.WriteIndex(ref, idx)
				default:
					img := image()
					dg, _ := img.Digest()
					dref, _ := name.ParseReference(repo + "@" + dg.String())
					err = remote.Write(dref, img)
				}
				if err != nil {
					nFail.Add(1)
					t.Logf("client %d: %v", c, err)
				} else {
					nOK.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return nOK.Load(), nFail.Load()
}

// pullEverything pulls every tag of the workload's repositories whole (every layer's
// bytes, every child of an index) from the replica at host and returns how many it pulled.
func pullEverything(t *testing.T, host string) int {
	t.Helper()
	n := 0
	for i := range 3 {
		repo, _ := name.NewRepository(fmt.Sprintf("%s/gc/r%d", host, i))
		tags, err := remote.List(repo)
		if err != nil {
			if strings.Contains(err.Error(), "NAME_UNKNOWN") {
				continue
			}
			t.Fatal(err)
		}
		for _, tag := range tags {
			ref := repo.Tag(tag)
			desc, err := remote.Get(ref)
			if err != nil {
				t.Fatalf("%s: %v", ref, err)
			}
			var imgs []v1.Image
			if desc.MediaType.IsIndex() {
				idx, err := desc.ImageIndex()
				if err != nil {
					t.Fatal(err)
				}
				im, err := idx.IndexManifest()
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range im.Manifests {
					img, err := idx.Image(m.Digest)
					if err != nil {
						t.Fatalf("%s child %s: %v", ref, m.Digest, err)
					}
					imgs = append(imgs, img)
				}
			} else {
				img, err := desc.Image()
				if err != nil {
					t.Fatal(err)
				}
				imgs = append(imgs, img)
			}
			for _, img := range imgs {
				if _, err := img.RawConfigFile(); err != nil {
					t.Fatalf("%s: config: %v", ref, err)
				}
				layers, err := img.Layers()
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range layers {
					rc, err := l.Compressed()
					if err != nil {
						t.Fatalf("%s: layer: %v", ref, err)
					}
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
					if err != nil {
						t.Fatalf("%s: layer: %v", ref, err)
					}
				}
			}
			n++
		}
	}
	return n
}

// fsckClean runs `registryd fsck --json` on the configuration and fails the test on any
// finding other than an orphan blob (young orphans are the grace period's business).
func fsckClean(t *testing.T, configPath string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.RegistrydBinary(t), "fsck", "--json", "-c", configPath).Output()
	if code := exitCode(err); code > 1 {
		t.Fatalf("fsck: exit %d: %v\n%s", code, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var f struct {
			Kind string `json:"kind"`
		}
		if json.Unmarshal(sc.Bytes(), &f) == nil && f.Kind != "" && f.Kind != "orphan-blob" {
			t.Errorf("fsck: %s", sc.Text())
		}
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 99
}

// gcMetric sums a registryd_gc_* counter over the replicas' /metrics.
func gcMetric(t *testing.T, rs []*testenv.Registryd, metric string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + `(\{[^}]*\})? ([0-9.e+]+)$`)
	sum := 0.0
	for _, r := range rs {
		resp, err := http.Get(r.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
		}
	}
	return sum
}

// TestGCOnlineReplicas: three replicas on one bucket collect garbage every two seconds
// (grace period three seconds) while four clients push images sharing layers, indexes and
// untagged images, move and delete tags on random replicas. At the end every tag pulls
// whole from every replica and fsck finds no missing blob, link or child; the collector
// did delete.
func TestGCOnlineReplicas(t *testing.T) {
	testenv.SkipIfShort(t, "online GC with replicas on emulators")
	for _, b := range []backend{{"s3", s3Backend, true}, {"gcs", gcsBackend, false}, {"azure", azureBackend, true}} {
		t.Run(b.name, func(t *testing.T) {
			storage := gcStorage(b.storage(t), 2*time.Second, 3*time.Second)
			cfg := registryConfig(storage, "")
			// The third replica does not collect: it protects its pushes once it has
			// found the collector's announcement in the bucket.
			noGC := registryConfig(strings.Replace(storage, "enabled: true", "enabled: false", 1), "")
			rs := make([]*testenv.Registryd, 3)
			for i := range rs {
				c := cfg
				if i == 2 {
					c = noGC
				}
				rs[i] = testenv.StartRegistryd(t, c)
			}
			ok, failed := gcWorkload(t, rs, 4, 15*time.Second)
			t.Logf("workload: %d operations succeeded, %d failed", ok, failed)
			if ok == 0 || failed > ok/5 {
				t.Fatalf("workload: %d succeeded, %d failed", ok, failed)
			}
			// Let the collector sweep what the workload left behind.
			time.Sleep(9 * time.Second)
			for _, r := range rs {
				n := pullEverything(t, r.Host)
				if n == 0 {
					t.Fatal("no tag left to pull")
				}
			}
			fsckClean(t, rs[0].ConfigPath)
			deleted := gcMetric(t, rs, "registryd_gc_deleted_objects_total")
			runs := gcMetric(t, rs, `registryd_gc_runs_total{result="ok"}`)
			t.Logf("collector: %v successful runs, %v objects deleted", runs, deleted)
			if deleted == 0 {
				t.Fatal("the collector deleted nothing")
			}
		})
	}
}

// TestGCDistributionServesAfter: after `registryd gc` swept a filesystem store (untagged
// manifests, a deleted tag's image, orphans), CNCF Distribution serves every remaining
// tag of it whole.
func TestGCDistributionServesAfter(t *testing.T) {
	testenv.SkipIfShort(t, "CNCF Distribution")
	root := t.TempDir()
	storage := fmt.Sprintf("  filesystem:\n    rootdirectory: %s\n", root)
	r := testenv.StartRegistryd(t, registryConfig(storage, ""))
	ok, failed := gcWorkload(t, []*testenv.Registryd{r}, 2, 4*time.Second)
	if ok == 0 || failed > 0 {
		t.Fatalf("workload: %d succeeded, %d failed", ok, failed)
	}
	before := pullEverything(t, r.Host)
	r.Stop()
	time.Sleep(2200 * time.Millisecond) // past the grace period and the push markers, in whole seconds
	cfgPath := filepath.Join(t.TempDir(), "gc.yml")
	if err := os.WriteFile(cfgPath, []byte(registryConfig(storage+"  gc:\n    graceperiod: 1ms\n    announce: 1s\n", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, testenv.RegistrydBinary(t), "gc", "-c", cfgPath)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("registryd gc: %v\n%s", err, stderr.String())
	}
	t.Logf("%s", strings.TrimSpace(stderr.String()))
	if !strings.Contains(stderr.String(), "blob:") {
		t.Fatalf("gc deleted no blob: %s", stderr.String())
	}
	dist := testenv.StartDistribution(t, root)
	if after := pullEverything(t, dist.Host); after != before {
		t.Fatalf("Distribution serves %d tags, registryd served %d", after, before)
	}
	fsckClean(t, cfgPath)
}
