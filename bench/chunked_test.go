package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// TestBenchChunkedPatch times a blob pushed in eight PATCHes (POST, PATCHes with
// Content-Range, PUT with the digest), the request pattern whose cost the per-chunk
// acknowledged-state record adds to: 64 MiB in 8 MiB PATCHes on the filesystem and on
// MinIO, and 1 MiB in 128 KiB PATCHes on MinIO behind the proxy that holds every backend
// request for 10 ms. With REGISTRYD_BENCH_BASELINE set to a
// registryd binary (built from an earlier commit), both run side by side, alternating
// within each round, on the same backend.
// Run: REGISTRYD_BENCH=1 [REGISTRYD_BENCH_BASELINE=/path/registryd] go test ./bench -run TestBenchChunkedPatch -v -timeout 30m
func TestBenchChunkedPatch(t *testing.T) {
	if os.Getenv("REGISTRYD_BENCH") == "" {
		t.Skip("benchmark: set REGISTRYD_BENCH=1 (see bench/README.md)")
	}
	baseline := os.Getenv("REGISTRYD_BENCH_BASELINE")
	minio := sync.OnceValue(func() *testenv.MinIO { return testenv.StartMinIO(t) })
	s3cfg := func(delay bool) func(t *testing.T) string {
		return func(t *testing.T) string {
			m := minio()
			endpoint := m.Endpoint
			if delay {
				endpoint = "http://" + delayProxy(t, strings.TrimPrefix(m.Endpoint, "http://"), backendDelay)
			}
			return fmt.Sprintf("  s3:\n    bucket: %s\n    region: %s\n    regionendpoint: %s\n    forcepathstyle: true\n"+
				"    accesskey: %s\n    secretkey: %s\n", m.NewBucket(t), m.Region, endpoint, m.AccessKey, m.SecretKey)
		}
	}
	backends := []struct {
		name        string
		storage     func(t *testing.T) string
		size, chunk int
	}{
		{"filesystem, 64 MiB in 8 MiB PATCHes", func(t *testing.T) string { return "  filesystem:\n    rootdirectory: " + t.TempDir() + "\n" }, 64 << 20, 8 << 20},
		{"MinIO, 64 MiB in 8 MiB PATCHes", s3cfg(false), 64 << 20, 8 << 20},
		// The delaying proxy also slows bulk transfers (it holds every 64 KiB the client
		// sends): a small blob shows what one more backend round trip per PATCH costs.
		{fmt.Sprintf("MinIO, %v per backend request, 1 MiB in 128 KiB PATCHes", backendDelay), s3cfg(true), 1 << 20, 128 << 10},
	}
	rounds := benchRounds()
	var table strings.Builder
	fmt.Fprintf(&table, "| backend, push | this checkout, median ms | baseline, median ms | ratio |\n|---|---|---|---|\n")
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			blob, err := io.ReadAll(newStream(uint64(b.size), int64(b.size)))
			if err != nil {
				t.Fatal(err)
			}
			dgst := digestOf(uint64(b.size), int64(b.size))
			cfg := func(t *testing.T) string {
				return "version: 0.1\nlog: {level: warn}\nhttp: {secret: bench-secret-0123456789}\nstorage:\n" + b.storage(t)
			}
			urls := []string{testenv.StartRegistryd(t, cfg(t)).URL}
			if baseline != "" {
				urls = append(urls, startBinary(t, baseline, cfg(t)))
			}
			ms := make([][]float64, len(urls))
			for round := range rounds {
				order := []int{0, 1}[:len(urls)]
				if round%2 == 1 {
					slices.Reverse(order) // neither goes first every time
				}
				for _, i := range order {
					u := urls[i]
					settle()
					start := time.Now()
					if err := chunkedPush(context.Background(), u, fmt.Sprintf("bench/chunked%d", round), blob, b.chunk, dgst); err != nil {
						t.Fatalf("target %d: %v", i, err)
					}
					ms[i] = append(ms[i], float64(time.Since(start).Microseconds())/1000)
				}
			}
			cur, base, ratio := median(ms[0]), "—", "—"
			if baseline != "" {
				// Each round's two pushes ran back to back: the ratio is the median of the
				// rounds' ratios, which the machine's noise disturbs less than the times.
				ratios := make([]float64, rounds)
				for i := range ratios {
					ratios[i] = ms[0][i] / ms[1][i]
				}
				base = fmt.Sprintf("%.0f", median(ms[1]))
				ratio = fmt.Sprintf("%.2f", median(ratios))
			}
			fmt.Fprintf(&table, "| %s | %.0f | %s | %s |\n", b.name, cur, base, ratio)
			t.Logf("ms per push: %v vs %v", ms[0], ms[1:])
		})
	}
	load, _ := os.ReadFile("/proc/loadavg")
	host, _ := os.Hostname()
	text := fmt.Sprintf("# A blob pushed in eight PATCHes: registryd against a baseline build\n\n"+
		"Command: `REGISTRYD_BENCH=1 REGISTRYD_BENCH_BASELINE=/path/registryd go test ./bench -run TestBenchChunkedPatch -v -timeout 30m`\n\n"+
		"Measured %s on %s (2 cores, load average %s at the end), %d rounds. Per backend one server of each build, each on its "+
		"own store, push in turn (alternating which goes first); the table gives the median time of the whole push (POST, 8 PATCHes, "+
		"PUT) and the median of each round's ratio (this checkout / baseline; above 1 means this checkout is slower).\n\n%s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, strings.Join(strings.Fields(string(load))[:3], " "), rounds, table.String())
	if err := os.WriteFile(filepath.Join("results", "chunked-patch.md"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text)
}

// startBinary starts the registryd binary at path with config and returns its URL.
func startBinary(t *testing.T, path, config string) string {
	port := testenv.FreePort(t)
	addr := testenv.Addr(port)
	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Start(t, testenv.Spec{Name: "registryd-baseline", Path: path, Args: []string{"serve", cfg},
		Env: []string{"REGISTRY_HTTP_ADDR=" + addr}, Addr: addr, Ready: testenv.HTTPReady("http://" + addr + "/v2/")})
	return "http://" + addr
}

// chunkedPush uploads blob to repo at base in PATCHes of chunk bytes and completes it.
func chunkedPush(ctx context.Context, base, repo string, blob []byte, chunk int, dgst string) error {
	loc, err := (&registry{url: base}).startUpload(ctx, repo)
	if err != nil {
		return err
	}
	for off := 0; off < len(blob); off += chunk {
		end := min(off+chunk, len(blob))
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, bytes.NewReader(blob[off:end]))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, end-1))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("PATCH %d-%d: %d", off, end-1, resp.StatusCode)
		}
		loc = base + resp.Header.Get("Location")
	}
	return (&registry{url: base}).put(ctx, loc, nil, 0, dgst)
}
