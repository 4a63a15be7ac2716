package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
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
