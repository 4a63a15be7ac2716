package config

import (
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	c, err := Load(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Addr != ":5000" || c.Storage.Filesystem == nil || c.Storage.Filesystem.RootDirectory != "./data" ||
		c.Limits.MaxManifestBytes != 4<<20 || c.Storage.Retry.MaxAttempts != 4 {
		t.Fatalf("defaults: %+v", c)
	}
	if up := c.Storage.Maintenance.UploadPurging; up.Enabled == nil || !*up.Enabled || up.Age != 168*time.Hour ||
		up.Interval != 24*time.Hour || up.DryRun {
		t.Fatalf("upload purging defaults: %+v", up)
	}
}

func TestUploadPurgingSwitches(t *testing.T) {
	c, err := Load(strings.NewReader("storage: {maintenance: {uploadpurging: {age: 2h, dryrun: true}}}\n"),
		[]string{"REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED=false"})
	if err != nil {
		t.Fatal(err)
	}
	if up := c.Storage.Maintenance.UploadPurging; *up.Enabled || up.Age != 2*time.Hour || up.Interval != 24*time.Hour || !up.DryRun {
		t.Fatalf("upload purging: %+v", up)
	}
}

func TestLoadAndEnv(t *testing.T) {
	yml := `
version: 0.1
log: {level: debug}
http: {addr: "127.0.0.1:6000", secret: s3cr3t-s3cr3t-s3cr3t, draintimeout: 5s}
storage:
  s3:
    bucket: from-file
    region: us-east-1
    chunksize: 10485760
  delete: {enabled: true}
`
	env := []string{
		"REGISTRY_STORAGE_S3_BUCKET=from-env",
		"REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true",
		"REGISTRY_STORAGE_S3_SECURE=false",
		"REGISTRY_STORAGE_RETRY_BASEDELAY=250ms",
		"REGISTRY_VALIDATION_MANIFESTS_ALLOWSPARSE=true",
		"UNRELATED=1",
	}
	c, err := Load(strings.NewReader(yml), env)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Storage.S3
	if s.Bucket != "from-env" || !s.ForcePathStyle || s.Secure == nil || *s.Secure || s.ChunkSize != 10<<20 {
		t.Errorf("s3: %+v", s)
	}
	if c.HTTP.DrainTimeout != 5*time.Second || c.Storage.Retry.BaseDelay != 250*time.Millisecond ||
		!c.Validation.Manifests.AllowSparse || !c.Storage.Delete.Enabled || c.Log.Level != "debug" {
		t.Errorf("config: %+v", c)
	}
}

func TestEnvSelectsBackend(t *testing.T) {
	c, err := Load(nil, []string{"REGISTRY_STORAGE_INMEMORY="})
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.InMemory == nil || c.Storage.Filesystem != nil {
		t.Fatalf("storage: %+v", c.Storage)
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		yml  string
		env  []string
		want string
	}{
		{"version: 0.2\n", nil, "version"},
		{"storage: {s3: {region: x}}\n", nil, "storage.s3.bucket"},
		{"storage: {s3: {bucket: b}}\n", nil, "storage.s3.region"},
		{"storage: {s3: {bucket: b, region: r, chunksize: 1000}}\n", nil, "storage.s3.chunksize"},
		{"storage: {s3: {bucket: b, region: r, accesskey: a}}\n", nil, "storage.s3.accesskey"},
		{"storage: {gcs: {}}\n", nil, "storage.gcs.bucket"},
		{"storage: {azure: {container: c}}\n", nil, "storage.azure.accountname"},
		{"storage: {azure: {accountname: a}}\n", nil, "storage.azure.container"},
		{"storage: {filesystem: {}, inmemory: {}}\n", nil, "exactly one"},
		{"log: {level: loud}\n", nil, "log.level"},
		{"storage: {filesystem: {rootdirectory: x, bogus: 1}}\n", nil, "bogus"},
		{"", []string{"REGISTRY_STORAGE_S3_NOPE=1"}, "storage.s3.nope"},
		{"", []string{"REGISTRY_HTTP_DRAINTIMEOUT=soon"}, "http.draintimeout"},
		{"", []string{"REGISTRY_STORAGE_DELETE_ENABLED=maybe"}, "REGISTRY_STORAGE_DELETE_ENABLED"},
		{"storage: {maintenance: {uploadpurging: {age: -1h}}}\n", nil, "storage.maintenance.uploadpurging"},
	} {
		_, err := Load(strings.NewReader(tc.yml), tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %v) = %v, want an error naming %q", tc.yml, tc.env, err, tc.want)
		}
	}
}
