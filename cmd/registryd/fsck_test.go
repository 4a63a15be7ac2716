package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/storage"
)

func TestParseFsckFlags(t *testing.T) {
	tests := []struct {
		args    []string
		want    fsckFlags
		wantErr bool
	}{
		{args: nil, want: fsckFlags{parallel: 16, opts: storage.FsckOptions{Parallel: 16}}},
		{args: []string{"-c", "c.yml", "--verify-digests", "--json"}, want: fsckFlags{file: "c.yml", json: true, parallel: 16,
			opts: storage.FsckOptions{VerifyDigests: true, Parallel: 16}}},
		{args: []string{"--repair-tags", "--repos", "team/*", "--parallel", "4", "c.yml"}, want: fsckFlags{file: "c.yml", parallel: 4,
			opts: storage.FsckOptions{Repair: true, RepairTags: true, Repositories: "team/*", Parallel: 4}}},
		{args: []string{"--repair", "c.yml"}, want: fsckFlags{file: "c.yml", parallel: 16, opts: storage.FsckOptions{Repair: true, Parallel: 16}}},
		{args: []string{"a.yml", "b.yml"}, wantErr: true},
		{args: []string{"-c", "a.yml", "b.yml"}, wantErr: true},
		{args: []string{"--parallel", "0"}, wantErr: true},
		{args: []string{"--bogus"}, wantErr: true},
		{args: []string{"c.yml", "--repair"}, wantErr: true},
		{args: []string{"--config", "c.yml", "--repos", "a/**"}, want: fsckFlags{file: "c.yml", parallel: 16,
			opts: storage.FsckOptions{Repositories: "a/**", Parallel: 16}}},
	}
	for _, tc := range tests {
		got, err := parseFsckFlags(tc.args, io.Discard)
		var ue *usageError
		if tc.wantErr {
			if !errors.As(err, &ue) {
				t.Errorf("%q: error %v, want a usage error", tc.args, err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
	var out bytes.Buffer
	if _, err := parseFsckFlags([]string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "--repair-tags") {
		t.Errorf("--help: %v\n%s", err, out.String())
	}
}

func TestFsckSummaryLine(t *testing.T) {
	clean := storage.FsckSummary{Repositories: 2, Tags: 3, Manifests: 4, Blobs: 9, OrphansChecked: true, Findings: map[storage.FindingKind]int{}}
	if got := summaryLine(clean, time.Second); !strings.HasSuffix(got, "no findings") || !strings.Contains(got, "2 repositories") {
		t.Errorf("clean summary: %s", got)
	}
	found := clean
	found.OrphansChecked = false
	found.Findings = map[storage.FindingKind]int{storage.FindingOrphanBlob: 2, storage.FindingLinkBlobMissing: 1}
	found.Repaired = 1
	got := summaryLine(found, time.Second)
	for _, want := range []string{"3 findings (link-blob-missing 1, orphan-blob 2), 1 repaired", "orphans not looked for"} {
		if !strings.Contains(got, want) {
			t.Errorf("summary %q lacks %q", got, want)
		}
	}
}

// TestFsckExitStatus runs the command on a filesystem store (clean, then with a dangling
// link) and on an S3 endpoint that refuses connections: a backend failure is exit
// status 2 with the cause on stderr, never a finding.
func TestFsckExitStatus(t *testing.T) {
	root := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fsConfig := write("fs.yml", "version: 0.1\nlog: {level: error}\nstorage:\n  filesystem:\n    rootdirectory: "+root+"\n")
	refused := write("s3.yml", "version: 0.1\nlog: {level: error}\nstorage:\n  retry: {maxattempts: 1}\n  s3:\n    bucket: b\n    region: us-east-1\n"+
		"    regionendpoint: http://127.0.0.1:1\n    forcepathstyle: true\n    accesskey: a\n    secretkey: s\n")
	ctx := t.Context()
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, append([]string{"fsck"}, args...), nil, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	if code, out, errOut := run(fsConfig); code != fsckClean || !strings.Contains(out, "no findings") {
		t.Errorf("empty store: exit %d\n%s%s", code, out, errOut)
	}
	d := "sha256:" + strings.Repeat("ab", 32)
	link := filepath.Join(root, "docker/registry/v2/repositories/team/app/_layers/sha256", strings.Repeat("ab", 32), "link")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, []byte(d), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("--json", fsConfig)
	if code != fsckFindings || !strings.Contains(out, `"kind":"link-blob-missing"`) || !strings.Contains(out, `"summary"`) {
		t.Errorf("dangling link: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run("--repair", fsConfig); code != fsckFindings || !strings.Contains(out, "[repaired]") {
		t.Errorf("repair: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(fsConfig); code != fsckClean {
		t.Errorf("after the repair: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("--repair", refused)
	if code != fsckError || !strings.Contains(errOut, "run aborted") || strings.Contains(out, "kind") || strings.Contains(out, "findings") {
		t.Errorf("refused backend: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if code, _, _ := run("--bogus"); code != fsckError {
		t.Errorf("bad flag: exit %d", code)
	}
}
