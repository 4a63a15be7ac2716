package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/storage"
)

// TestGCCommand: `registryd gc --dry-run` prints the plan and deletes nothing; `registryd
// gc --plan FILE` then deletes exactly the plan's items.
func TestGCCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := storage.New(d, storage.Options{Secret: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	var ds []digest.Digest
	for _, c := range []string{"config", "layer"} {
		dg := digest.FromString(c)
		if _, err := reg.PutBlob(ctx, "app", strings.NewReader(c), dg); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, dg)
	}
	body := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a","digest":"` +
		ds[0].String() + `","size":6},"layers":[{"mediaType":"b","digest":"` + ds[1].String() + `","size":5}]}`
	m, err := reg.PutManifest(ctx, "app", digest.FromString(body).String(), []byte(body), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2200 * time.Millisecond) // older than the grace period and the push markers, in whole seconds
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte("version: 0.1\nlog: {level: error}\nstorage:\n  filesystem: {rootdirectory: "+dir+"}\n  gc: {graceperiod: 1ms, announce: 100ms}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"gc", "--dry-run", "-c", cfgFile}, nil, &stdout, &stderr); code != exitOK {
		t.Fatalf("dry run: exit %d: %s", code, stderr.String())
	}
	var plan storage.GCPlan
	if err := json.Unmarshal(stdout.Bytes(), &plan); err != nil {
		t.Fatal(err)
	}
	if plan.Counts["manifest"] != 1 || plan.Counts["blob"] != 3 || plan.Counts["link"] != 2 || !plan.DryRun {
		t.Fatalf("plan %+v", plan.Counts)
	}
	if _, err := reg.GetManifest(ctx, "app", m.Digest.String()); err != nil {
		t.Fatalf("dry run deleted: %v", err)
	}
	planFile := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(planFile, stdout.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run(ctx, []string{"gc", "--plan", planFile, cfgFile}, nil, &stdout, &stderr); code != exitOK {
		t.Fatalf("apply: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "deleted map[blob:3 link:2 manifest:1]") {
		t.Fatalf("summary: %s", stderr.String())
	}
	if _, err := reg.GetManifest(ctx, "app", m.Digest.String()); err == nil {
		t.Fatal("manifest still there")
	}
	if code := run(ctx, []string{"gc", "--dry-run", "--plan", planFile, cfgFile}, nil, &stdout, &stderr); code != exitUsage {
		t.Fatalf("both flags: exit %d", code)
	}
}

func TestGCMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newGCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.record(&storage.GCReport{Deleted: map[string]int{"blob": 2}, DeletedBytes: 10, Duration: time.Second}, nil)
	m.record(nil, storage.ErrLeaseHeld)
	if got := testutil.ToFloat64(m.runs.WithLabelValues("ok")); got != 1 {
		t.Errorf("ok runs %v", got)
	}
	if got := testutil.ToFloat64(m.runs.WithLabelValues("skipped")); got != 1 {
		t.Errorf("skipped runs %v", got)
	}
	if got := testutil.ToFloat64(m.deleted.WithLabelValues("blob")); got != 2 {
		t.Errorf("deleted blobs %v", got)
	}
	if got := testutil.ToFloat64(m.deletedBytes); got != 10 {
		t.Errorf("deleted bytes %v", got)
	}
}
