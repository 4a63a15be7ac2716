package config

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestProblems: each bad configuration, from the file or the environment, is reported
// naming its key path (and where it came from) and what is allowed.
func TestProblems(t *testing.T) {
	for _, tc := range []struct {
		name string
		yml  string
		env  []string
		want []string // fragments of one reported problem
	}{
		{"size with a unit is fine, garbage is not", "storage: {s3: {bucket: b, region: r, chunksize: 4 megs}}\n", nil,
			[]string{"storage.s3.chunksize (line 1)", "want a size in bytes", "16MiB"}},
		{"s3 part too small", "storage: {s3: {bucket: b, region: r, chunksize: 4MiB}}\n", nil,
			[]string{"storage.s3.chunksize", "between 5 MiB and 5 GiB"}},
		{"s3 part too large", "storage: {s3: {bucket: b, region: r, chunksize: 6GiB}}\n", nil,
			[]string{"storage.s3.chunksize", "between 5 MiB and 5 GiB"}},
		{"s3 copy part", "storage: {s3: {bucket: b, region: r, multipartcopychunksize: 1000}}\n", nil,
			[]string{"storage.s3.multipartcopychunksize"}},
		{"s3 budget below a part", "storage: {s3: {bucket: b, region: r, chunksize: 64MiB, memorybudget: 32MiB}}\n", nil,
			[]string{"storage.s3.memorybudget", "at least storage.s3.chunksize"}},
		{"gcs part", "storage: {gcs: {bucket: b, chunksize: 2GiB}}\n", nil, []string{"storage.gcs.chunksize", "between 256 KiB and 1 GiB"}},
		{"azure block", "storage: {azure: {accountname: a, container: c, chunksize: 5000MiB}}\n", nil,
			[]string{"storage.azure.chunksize", "4000 MiB"}},
		{"azurite url without the account", "storage: {azure: {accountname: devstoreaccount1, container: c, serviceurl: 'http://127.0.0.1:10000'}}\n", nil,
			[]string{"storage.azure.serviceurl", "http://127.0.0.1:10000/devstoreaccount1"}},
		{"negative redirect expiry", "storage: {redirect: {expiry: -5m}}\n", nil, []string{"storage.redirect.expiry", "positive"}},
		{"redirect expiry beyond S3's limit", "storage: {redirect: {expiry: 200h}}\n", nil, []string{"storage.redirect.expiry", "168h0m0s"}},
		{"negative drain timeout", "http: {draintimeout: -1s}\n", nil, []string{"http.draintimeout", "positive"}},
		{"negative drain delay", "", []string{"REGISTRY_HTTP_DRAINDELAY=-3s"}, []string{"http.draindelay (REGISTRY_HTTP_DRAINDELAY)", "negative"}},
		{"negative retry delay", "storage: {retry: {basedelay: -100ms}}\n", nil, []string{"storage.retry.basedelay", "positive"}},
		{"bare number duration", "http: {draintimeout: 30}\n", nil, []string{"http.draintimeout (line 1)", "with a unit"}},
		{"listen address without a port", "http: {addr: \"5000\"}\n", nil, []string{"http.addr", `did you mean ":5000"`}},
		{"debug address", "", []string{"REGISTRY_HTTP_DEBUG_ADDR=localhost"}, []string{"http.debug.addr (REGISTRY_HTTP_DEBUG_ADDR)", "host:port"}},
		{"typo names the closest key", "storage: {s3: {bucket: b, region: r, chunksise: 1}}\n", nil,
			[]string{"storage.s3.chunksise (line 1)", "did you mean storage.s3.chunksize?"}},
		{"misplaced key found elsewhere", "storage: {readonly: {enabled: true}}\n", nil,
			[]string{"storage.readonly", "did you mean storage.maintenance.readonly?"}},
		{"filesystem typo", "storage:\n  filesystem:\n    rootdir: /x\n", nil,
			[]string{"storage.filesystem.rootdir (line 3)", "storage.filesystem.rootdirectory"}},
		{"unknown top-level key", "logging: {level: debug}\n", nil, []string{"logging", "no such key"}},
		{"auth type registryd lacks", "auth: {silly: {realm: x, service: y}}\n", nil, []string{"auth.silly", "refuses to start"}},
		{"middleware", "middleware: {registry: [{name: cloudfront}]}\n", nil, []string{"middleware", "refuses to start"}},
		{"auth type registryd lacks from the environment", "", []string{"REGISTRY_AUTH_SILLY_REALM=x"}, []string{"auth.silly", "refuses to start"}},
		{"htpasswd without its file from the environment", "", []string{"REGISTRY_AUTH_HTPASSWD_REALM=x"}, []string{"auth.htpasswd.path", "required"}},
		{"unknown key under a known section from the environment", "", []string{"REGISTRY_STORAGE_S3_NOPE=1"},
			[]string{"storage.s3.nope (REGISTRY_STORAGE_S3_NOPE)", "no such key"}},
		{"env duration", "", []string{"REGISTRY_HTTP_DRAINTIMEOUT=soon"}, []string{"http.draintimeout (REGISTRY_HTTP_DRAINTIMEOUT)", "duration"}},
		{"env bool", "", []string{"REGISTRY_STORAGE_DELETE_ENABLED=maybe"}, []string{"storage.delete.enabled (REGISTRY_STORAGE_DELETE_ENABLED)", "true or false"}},
		{"env int", "", []string{"REGISTRY_STORAGE_RETRY_MAXATTEMPTS=many"}, []string{"storage.retry.maxattempts", "integer"}},
		{"mapping where a value goes", "storage: {delete: {enabled: {x: 1}}}\n", nil, []string{"storage.delete.enabled (line 1)"}},
		{"value where a mapping goes", "storage: {s3: bucket}\n", nil, []string{"storage.s3 (line 1)", "want a mapping of keys (bucket, region"}},
		{"invalid YAML", "storage:\n  s3:\n    accesskey: AKIA  secretkey: x\n", nil, []string{"not valid YAML", "one key per line"}},
		{"two backends", "storage: {filesystem: {}, inmemory: {}}\n", nil, []string{"storage", "exactly one", "filesystem, inmemory"}},
		{"log level", "log: {level: loud}\n", nil, []string{"log.level", "debug, info, warn, error", `"loud"`}},
		{"version", "version: 0.2\n", nil, []string{"version", "0.1"}},
		{"s3 bucket", "storage: {s3: {region: x}}\n", nil, []string{"storage.s3.bucket", "required"}},
		{"s3 region", "storage: {s3: {bucket: b}}\n", nil, []string{"storage.s3.region"}},
		{"s3 key pair", "storage: {s3: {bucket: b, region: r, accesskey: a}}\n", nil, []string{"storage.s3.accesskey"}},
		{"gcs bucket", "storage: {gcs: {}}\n", nil, []string{"storage.gcs.bucket"}},
		{"azure account", "storage: {azure: {container: c}}\n", nil, []string{"storage.azure.accountname"}},
		{"azure container", "storage: {azure: {accountname: a}}\n", nil, []string{"storage.azure.container"}},
		{"purging age", "storage: {maintenance: {uploadpurging: {age: -1h}}}\n", nil, []string{"storage.maintenance.uploadpurging.age"}},
		{"header name", "http: {headers: {\"Bad Header\": [x]}}\n", nil, []string{"http.headers.Bad Header"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *strings.Reader
			if tc.yml != "" {
				r = strings.NewReader(tc.yml)
			}
			var c *Config
			var err error
			if r != nil {
				c, err = Load(r, tc.env)
			} else {
				c, err = Load(nil, tc.env)
			}
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			problems := Errors(err)
			if len(problems) == 0 {
				t.Fatalf("error %q holds no *config.Error", err)
			}
			for _, p := range problems {
				ok := true
				for _, w := range tc.want {
					ok = ok && strings.Contains(p.Error(), w)
				}
				if ok {
					return
				}
			}
			t.Errorf("no problem mentions all of %q:\n%v", tc.want, err)
		})
	}
}

// TestEveryProblemAtOnce: one Load reports every mistake, not the first.
func TestEveryProblemAtOnce(t *testing.T) {
	yml := "http: {addr: \"5000\", draintimeout: -1s}\nstorage: {redirect: {expiry: -5m}, s3: {bucket: b, region: r, chunksize: 1}}\n"
	_, err := Load(strings.NewReader(yml), []string{"REGISTRY_LOG_LEVEL=chatty"})
	var keys []string
	for _, p := range Errors(err) {
		keys = append(keys, p.Key)
	}
	for _, want := range []string{"http.addr", "http.draintimeout", "storage.redirect.expiry", "storage.s3.chunksize", "log.level"} {
		if !strings.Contains(strings.Join(keys, " "), want) {
			t.Errorf("keys %v lack %s", keys, want)
		}
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Errorf("errors.As(%v, *Error) failed", err)
	}
}

// TestKubernetesServiceLinks: the variables Kubernetes injects for a Service named
// "registry" (or "registry-http", "registry-storage") are ignored, with one debug notice.
func TestKubernetesServiceLinks(t *testing.T) {
	env := []string{
		"REGISTRY_PORT=tcp://10.96.0.12:5000",
		"REGISTRY_PORT_5000_TCP=tcp://10.96.0.12:5000",
		"REGISTRY_PORT_5000_TCP_PROTO=tcp",
		"REGISTRY_PORT_5000_TCP_PORT=5000",
		"REGISTRY_PORT_5000_TCP_ADDR=10.96.0.12",
		"REGISTRY_SERVICE_HOST=10.96.0.12",
		"REGISTRY_SERVICE_PORT=5000",
		"REGISTRY_SERVICE_PORT_HTTP=5000",
		"REGISTRY_HTTP_SERVICE_HOST=10.96.0.13",
		"REGISTRY_HTTP_PORT=tcp://10.96.0.13:80",
		"REGISTRY_STORAGE_PORT_9000_TCP_ADDR=10.96.0.14",
		"REGISTRY_SOMETHING_ELSE=1",
		"REGISTRY_STORAGE_DELETE_ENABLED=true",
	}
	c, err := Load(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Storage.Delete.Enabled {
		t.Error("REGISTRY_STORAGE_DELETE_ENABLED not applied")
	}
	if len(c.Ignored) != 1 || c.Ignored[0].Level != slog.LevelDebug {
		t.Fatalf("ignored: %+v, want one debug notice", c.Ignored)
	}
	for _, kv := range env[:12] {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(c.Ignored[0].Key, name) {
			t.Errorf("notice %q does not name %s", c.Ignored[0].Key, name)
		}
	}
}

// TestDistributionKeysAccepted: CNCF Distribution's own keys that registryd does not
// implement start it, each named in a warning.
func TestDistributionKeysAccepted(t *testing.T) {
	yml := `
version: 0.1
log:
  accesslog: {disabled: true}
  level: info
  fields: {service: registry, environment: staging}
storage:
  cache: {blobdescriptor: inmemory}
  filesystem: {rootdirectory: /var/lib/registry}
  tag: {concurrencylimit: 5}
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
  h2c: {enabled: false}
health:
  storagedriver: {enabled: true, interval: 10s, threshold: 3}
notifications:
  endpoints: []
redis: {addr: localhost:6379}
proxy: {remoteurl: https://registry-1.docker.io}
compatibility: {schema1: {enabled: false}}
validation: {disabled: true}
reporting: {bugsnag: {apikey: x}}
`
	c, err := Load(strings.NewReader(yml), []string{"REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR=redis"})
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	for _, n := range c.Ignored {
		if n.Level != slog.LevelWarn {
			t.Errorf("notice %+v: want warn", n)
		}
		warned = append(warned, n.Key)
	}
	for _, want := range []string{"storage.cache", "storage.tag", "http.h2c", "health", "notifications", "redis", "proxy",
		"compatibility", "validation.disabled", "reporting", "storage.cache.blobdescriptor (REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR)"} {
		if !strings.Contains(strings.Join(warned, "|"), want) {
			t.Errorf("warnings %q lack %s", warned, want)
		}
	}
	if c.Log.Fields["environment"] != "staging" || c.HTTP.Headers["X-Content-Type-Options"][0] != "nosniff" {
		t.Errorf("log.fields %v, http.headers %v", c.Log.Fields, c.HTTP.Headers)
	}
}

func TestSizesAndDurations(t *testing.T) {
	c, err := Load(strings.NewReader(`
storage:
  s3: {bucket: b, region: r, chunksize: 32MiB, memorybudget: 0.5GiB, multipartcopythresholdsize: 100MB}
  redirect: {expiry: 1h30m}
http: {draindelay: 5s}
limits: {maxmanifestbytes: 8MiB}
`), []string{"REGISTRY_STORAGE_S3_MULTIPARTCOPYCHUNKSIZE=64mib", "REGISTRY_STORAGE_S3_FORCEPATHSTYLE=yes"})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Storage.S3
	if s.ChunkSize != 32<<20 || s.MemoryBudget != 512<<20 || s.MultipartCopyThresholdSize != 100e6 || s.MultipartCopyChunkSize != 64<<20 || !s.ForcePathStyle {
		t.Errorf("s3: %+v", s)
	}
	if c.Storage.Redirect.Expiry != 90*time.Minute || c.HTTP.DrainDelay != 5*time.Second || c.Limits.MaxManifestBytes != 8<<20 {
		t.Errorf("config: %+v", c)
	}
}

func TestEnvSelectsBackendByName(t *testing.T) {
	c, err := Load(nil, []string{"REGISTRY_STORAGE=inmemory"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.InMemory == nil || c.Storage.Filesystem != nil {
		t.Fatalf("storage: %+v", c.Storage)
	}
}

// TestMarshalMasked: the effective configuration prints every secret masked and loads
// back to the same settings.
func TestMarshalMasked(t *testing.T) {
	yml := `
http: {secret: 0123456789abcdef-secret, headers: {X-Frame-Options: [DENY]}}
storage:
  s3: {bucket: b, region: r, accesskey: AKIAEXAMPLE, secretkey: wJalrXUtnFEMI, sessiontoken: FwoGZXIvY}
log: {fields: {env: prod}}
`
	c, err := Load(strings.NewReader(yml), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.MarshalMasked()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"0123456789abcdef-secret", "AKIAEXAMPLE", "wJalrXUtnFEMI", "FwoGZXIvY"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("output shows %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"draintimeout: 30s", "expiry: 20m0s", "bucket: b", "secretkey: " + Masked, "X-Frame-Options", "env: prod"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The masked secrets are long enough to pass validation: the output loads back.
	back, err := Load(strings.NewReader(string(out)), nil)
	if err != nil {
		t.Fatalf("masked output does not load: %v\n%s", err, out)
	}
	if back.Storage.S3.Bucket != "b" || back.HTTP.DrainTimeout != 30*time.Second || back.Storage.Redirect.Expiry != 20*time.Minute {
		t.Errorf("loaded back: %+v", back)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"5242880", 5 << 20, true}, {"5MiB", 5 << 20, true}, {"5 MiB", 5 << 20, true},
		{"5mib", 5 << 20, true}, {"5MB", 5e6, true}, {"1.5GiB", 3 << 29, true}, {"100B", 100, true},
		{"4 megs", 0, false}, {"-1MiB", 0, false}, {"MiB", 0, false}, {"", 0, false}, {"1e30GiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
