package config

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// warnings returns the keys of c's warn-level notices, joined by "|".
func warnings(c *Config) string {
	var keys []string
	for _, n := range c.Ignored {
		if n.Level >= slog.LevelWarn {
			keys = append(keys, n.Key+": "+n.Reason)
		}
	}
	return strings.Join(keys, "|")
}

// TestDistributionShippedConfigs: the configuration files CNCF Distribution ships and
// documents (copies under testdata/distribution) load, with the settings registryd
// implements taken as Distribution documents them, and one warning naming each
// Distribution key registryd does not implement.
func TestDistributionShippedConfigs(t *testing.T) {
	for _, tc := range []struct {
		file  string
		env   []string
		check func(t *testing.T, c *Config)
		warn  []string // keys the warnings must name
	}{
		{"config-dev.yml", nil, func(t *testing.T, c *Config) {
			if c.Storage.Filesystem == nil || c.Storage.Filesystem.RootDirectory != "/var/lib/registry" {
				t.Errorf("storage: %+v", c.Storage)
			}
			if !c.Storage.Delete.Enabled || *c.Storage.Maintenance.UploadPurging.Enabled || c.Log.Level != "debug" ||
				c.HTTP.Addr != ":5000" || c.HTTP.Debug.Addr != ":5001" || c.Log.Fields["environment"] != "development" ||
				c.HTTP.Headers["X-Content-Type-Options"][0] != "nosniff" {
				t.Errorf("config: %+v", c)
			}
		}, []string{"storage.cache", "storage.tag", "http.debug.prometheus", "health"}},
		{"config-example.yml", nil, func(t *testing.T, c *Config) {
			if c.Auth.Htpasswd == nil || c.Auth.Htpasswd.Path != "/etc/registry" || c.Auth.Htpasswd.Realm != "basic-realm" {
				t.Errorf("auth: %+v", c.Auth)
			}
			if c.Storage.Filesystem.RootDirectory != "/var/lib/registry" || c.Log.Fields["service"] != "registry" {
				t.Errorf("config: %+v", c)
			}
		}, []string{"storage.cache", "storage.tag", "health"}},
		{"config-cache.yml", nil, func(t *testing.T, c *Config) {
			if !c.Storage.Maintenance.ReadOnly.Enabled {
				t.Error("proxy: want read-only, as Distribution's pull-through cache refuses pushes")
			}
			if c.Storage.Filesystem.RootDirectory != "/var/lib/registry-cache" || c.HTTP.Secret != "asecretforlocaldevelopment" {
				t.Errorf("config: %+v", c)
			}
		}, []string{"storage.cache", "redis", "notifications", "proxy: pull-through caching is not implemented", "health"}},
		{"osx.yml", nil, func(t *testing.T, c *Config) {
			if c.Storage.Filesystem.RootDirectory != "/Users/Shared/Registry" || c.HTTP.Addr != "0.0.0.0:5000" {
				t.Errorf("config: %+v", c)
			}
		}, []string{"storage.cache"}},
		{"docs-development.yml", nil, func(t *testing.T, c *Config) {
			if c.HTTP.Addr != "localhost:5000" || c.HTTP.Debug.Addr != "localhost:5001" || c.Log.Level != "debug" {
				t.Errorf("config: %+v", c)
			}
		}, nil},
		{"conf-local-s3.yml", nil, func(t *testing.T, c *Config) {
			s := c.Storage.S3
			if s == nil || s.Bucket != "images-local" || s.RootDirectory != "/registry-v2" || s.RegionEndpoint != "http://127.0.0.1:9000" ||
				s.ChunkSize != 32<<20 || *s.Secure || s.AccessKey != "distribution" || s.V4Auth == nil || !*s.V4Auth || s.UseFIPSEndpoint {
				t.Errorf("s3: %+v", s)
			}
			if c.Log.Formatter != "text" || c.HTTP.DrainTimeout.String() != "5s" {
				t.Errorf("config: %+v", c)
			}
		}, []string{"storage.cache", "http.debug.prometheus"}},
		{"conf-e2e-cloud-storage.yml", nil, func(t *testing.T, c *Config) {
			if s := c.Storage.S3; s == nil || !s.ForcePathStyle || !*s.Secure || !c.Storage.Redirect.Disable {
				t.Errorf("config: %+v", c.Storage)
			}
		}, []string{"redis", "storage.cache"}},
		{"s3-reference.yml", nil, func(t *testing.T, c *Config) {
			s := c.Storage.S3
			if s.LogLevel != "debug" || s.Accelerate || s.UseDualStack || !s.Encrypt || s.KeyID != "mykeyid" ||
				s.MultipartCopyChunkSize != 32<<20 || s.MultipartCopyThresholdSize != 32<<20 {
				t.Errorf("s3: %+v", s)
			}
		}, []string{"storage.s3.multipartcopymaxconcurrency", "storage.cache", "storage.tag"}},
		{"azure-shared-key.yml", nil, func(t *testing.T, c *Config) {
			a := c.Storage.Azure
			if a.EffectiveType() != AzureSharedKey || a.RootDirectory != "/az/object/name/prefix" || a.Container != "registry" {
				t.Errorf("azure: %+v", a)
			}
		}, []string{"storage.azure.max_retries", "storage.azure.retry_delay"}},
		{"azure-client-secret.yml", nil, func(t *testing.T, c *Config) {
			a := c.Storage.Azure
			if a.EffectiveType() != AzureClientSecret || a.Credentials.TenantID != "tenant_id_string" ||
				a.Credentials.ClientID != "client_id_string" || a.Credentials.Secret != "secret_string" {
				t.Errorf("azure: %+v %+v", a, a.Credentials)
			}
		}, []string{"storage.azure.max_retries"}},
		{"gcs-credentials.yml", nil, func(t *testing.T, c *Config) {
			var sa map[string]string
			if err := json.Unmarshal([]byte(c.Storage.GCS.Credentials), &sa); err != nil ||
				sa["type"] != "service_account" || sa["client_email"] != "client@example.com" || sa["private_key"] != "private_key_string" {
				t.Errorf("gcs credentials %q: %v", c.Storage.GCS.Credentials, err)
			}
		}, nil},
		{"gcs-keyfile.yml", nil, func(t *testing.T, c *Config) {
			if g := c.Storage.GCS; g.KeyFile != "/path/to/keyfile" || g.ChunkSize != 5<<20 || g.RootDirectory != "/gcs/object/name/prefix" {
				t.Errorf("gcs: %+v", g)
			}
		}, nil},
		{"twuni-chart-config.yml", []string{
			"REGISTRY_HTTP_SECRET=abcdefghijklmnop",
			"REGISTRY_STORAGE_S3_REGION=us-east-1", "REGISTRY_STORAGE_S3_BUCKET=registry",
			"REGISTRY_STORAGE_S3_ACCESSKEY=AKIA", "REGISTRY_STORAGE_S3_SECRETKEY=secret",
			"REGISTRY_STORAGE_S3_REGIONENDPOINT=http://minio:9000", "REGISTRY_STORAGE_S3_ROOTDIRECTORY=/object/prefix",
			"REGISTRY_STORAGE_S3_SECURE=false", "REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true", "REGISTRY_STORAGE_S3_SKIPVERIFY=true",
			"REGISTRY_STORAGE_S3_ENCRYPT=false", "REGISTRY_STORAGE_DELETE_ENABLED=true",
			"REGISTRY_AUTH=htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
		}, func(t *testing.T, c *Config) {
			s := c.Storage.S3
			if c.Storage.Filesystem != nil || s == nil || s.Bucket != "registry" || s.RegionEndpoint != "http://minio:9000" ||
				!s.ForcePathStyle || !s.SkipVerify || *s.Secure || s.RootDirectory != "/object/prefix" || !c.Storage.Delete.Enabled {
				t.Errorf("storage: %+v %+v", c.Storage, s)
			}
			if h := c.Auth.Htpasswd; h == nil || h.Path != "/auth/htpasswd" || h.Realm != "Registry Realm" || c.HTTP.Secret != "abcdefghijklmnop" {
				t.Errorf("auth %+v, secret %q", c.Auth, c.HTTP.Secret)
			}
		}, []string{"health", "storage.cache", "http.debug.prometheus"}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join("testdata", "distribution", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			c, err := Load(f, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
			w := warnings(c)
			for _, k := range tc.warn {
				if !strings.Contains(w, k) {
					t.Errorf("warnings lack %s:\n%s", k, strings.ReplaceAll(w, "|", "\n"))
				}
			}
		})
	}
}

// TestDistributionKeys: each CNCF Distribution v3 key registryd does not implement, in
// the file or the environment, is accepted with a warning naming it and saying what
// registryd does instead; a setting that would serve more openly or otherwise than the
// configuration says when ignored stops the start, naming it.
func TestDistributionKeys(t *testing.T) {
	const fs = "storage: {filesystem: {rootdirectory: /r}}\n"
	for _, tc := range []struct {
		name string
		yml  string
		env  []string
		warn string // key: fragment of the warning ("" when none is expected)
		fail string // key: fragment of the refusal
	}{
		{"accesslog", fs + "log: {accesslog: {disabled: true}}\n", nil, "", ""},
		{"hooks", fs + "log: {hooks: [{type: mail, levels: [panic]}]}\n", nil, "log.hooks: log hooks", ""},
		{"reportcaller", fs + "log: {reportcaller: true}\n", nil, "log.reportcaller", ""},
		{"logstash", fs + "log: {formatter: logstash}\n", nil, "log.formatter: logstash: written as", ""},
		{"deprecated loglevel", fs + "loglevel: debug\n", nil, "", ""},
		{"cache", fs + "storage: {cache: {blobdescriptor: redis}}\n", nil, "storage.cache: ", ""},
		{"cache from env", fs, []string{"REGISTRY_STORAGE_CACHE_BLOBDESCRIPTORSIZE=10"}, "storage.cache.blobdescriptorsize (REGISTRY_STORAGE_CACHE_BLOBDESCRIPTORSIZE)", ""},
		{"tag", fs + "storage: {tag: {concurrencylimit: 8}}\n", nil, "storage.tag", ""},
		{"maxthreads", "storage: {filesystem: {rootdirectory: /r, maxthreads: 100}}\n", nil, "storage.filesystem.maxthreads", ""},
		{"catalog", fs + "catalog: {maxentries: 1000}\n", nil, "catalog: limits.maxlistentries", ""},
		{"tags", fs + "tags: {maxtags: 100}\n", nil, "tags: limits.maxlistentries", ""},
		{"short secret", fs + "http: {secret: hmacsecret}\n", nil, "http.secret: only 10 characters", ""},
		{"prefix", fs + "http: {prefix: /my/nested/registry/}\n", nil, "", ""},
		{"prefix without slashes", fs + "http: {prefix: my/registry}\n", nil, "", "http.prefix"},
		{"prefix root", fs + "http: {prefix: /}\n", nil, "", ""},
		{"prefix v2", fs + "http: {prefix: /v2/}\n", nil, "", "http.prefix"},
		{"prefix under v2", fs + "http: {prefix: /v2/mirror/}\n", nil, "", "http.prefix"},
		{"prefix v2 lookalike", fs + "http: {prefix: /v2mirror/}\n", nil, "", ""},
		{"prefix dot dot", fs + "http: {prefix: /a/../b/}\n", nil, "", "http.prefix"},
		{"prefix no trailing slash from env", fs, []string{"REGISTRY_HTTP_PREFIX=/my/registry"}, "", "http.prefix"},
		{"net tcp", fs + "http: {net: tcp}\n", nil, "", ""},
		{"net unix", fs + "http: {net: unix, addr: /run/registry.sock}\n", nil, "", "http.net"},
		{"h2c", fs + "http: {h2c: {enabled: true}}\n", nil, "http.h2c", ""},
		{"prometheus", fs + "http: {debug: {addr: ':5001', prometheus: {enabled: true, path: /metrics}}}\n", nil, "http.debug.prometheus", ""},
		{"clientauth", fs + "http: {tls: {certificate: /c, key: /k, clientcas: [/ca], clientauth: verify-client-cert-if-given}}\n", nil, "http.tls.clientauth", ""},
		{"letsencrypt", fs + "http: {tls: {letsencrypt: {cachefile: /c, email: a@b}}}\n", nil, "", "http.tls.letsencrypt"},
		{"tls1.0", fs + "http: {tls: {certificate: /c, key: /k, minimumtls: tls1.0}}\n", nil, "", "http.tls.minimumtls"},
		{"notifications", fs + "notifications: {endpoints: [{name: a, url: 'http://x', timeout: 1s}]}\n", nil, "notifications: webhook", ""},
		{"redis", fs + "redis: {addrs: [localhost:6379], db: 0}\n", nil, "redis: no cache", ""},
		{"redis from env", fs, []string{"REGISTRY_REDIS_ADDRS=[localhost:6379]"}, "redis.addrs (REGISTRY_REDIS_ADDRS)", ""},
		{"health", fs + "health: {storagedriver: {enabled: true}, file: [{file: /x}]}\n", nil, "health: /readyz", ""},
		{"reporting", fs + "reporting: {bugsnag: {apikey: x}}\n", nil, "reporting", ""},
		{"compatibility", fs + "compatibility: {schema1: {enabled: true}}\n", nil, "compatibility", ""},
		{"validation disabled", fs + "validation: {disabled: true}\n", nil, "validation.disabled", ""},
		{"validation urls", fs + "validation: {manifests: {urls: {allow: ['^https://']}}}\n", nil, "validation.manifests.urls", ""},
		{"validation indexes", fs + "validation: {manifests: {indexes: {platforms: none}}}\n", nil, "validation.manifests.indexes", ""},
		{"proxy", fs + "proxy: {remoteurl: 'https://registry-1.docker.io', username: u, password: p, ttl: 168h}\n", nil, "proxy: pull-through", ""},
		{"proxy from env", fs, []string{"REGISTRY_PROXY_REMOTEURL=https://registry-1.docker.io", "REGISTRY_PROXY_PASSWORD=p"}, "proxy: pull-through", ""},
		{"policy classes", fs + "policy: {repository: {classes: [image]}}\n", nil, "", "policy.repository.classes"},
		{"policy empty", fs + "policy: {repository: {classes: []}}\n", nil, "", ""},
		{"auth silly", fs + "auth: {silly: {realm: r, service: s}}\n", nil, "", "auth.silly"},
		{"auth silly from env", fs, []string{"REGISTRY_AUTH=silly"}, "", "auth.silly (REGISTRY_AUTH)"},
		{"auth none", fs + "auth: {none: {}}\n", nil, "", ""},
		{"autoredirect", fs + "auth: {token: {realm: 'https://t/token', service: s, issuer: i, jwks: /j, autoredirect: true, autoredirectpath: /auth/token/}}\n", nil, "auth.token.autoredirect", ""},
		{"signing algorithms registryd verifies", fs + "auth: {token: {realm: r, service: s, issuer: i, jwks: /j, signingalgorithms: [EdDSA, HS256]}}\n", nil, "", ""},
		{"signing algorithms registryd cannot verify", fs + "auth: {token: {realm: r, service: s, issuer: i, jwks: /j, signingalgorithms: [HS256, PS512]}}\n", nil, "", "auth.token.signingalgorithms"},
		{"cloudfront", fs + "middleware: {storage: [{name: cloudfront, options: {baseurl: 'https://x/'}}]}\n", nil, "", "middleware.storage[0]: cloudfront"},
		{"redirect middleware", fs + "middleware: {storage: [{name: redirect, options: {baseurl: 'https://x/'}}]}\n", nil, "", "middleware.storage[0]: redirect"},
		{"registry middleware", fs + "middleware: {registry: [{name: ARegistryMiddleware}]}\n", nil, "", "middleware.registry[0]"},
		{"disabled middleware", fs + "middleware: {storage: [{name: cloudfront, disabled: true}]}\n", nil, "middleware.storage[0] (cloudfront): disabled", ""},
		{"middleware from env", fs, []string{"REGISTRY_MIDDLEWARE_STORAGE_0_NAME=cloudfront"}, "", "middleware.storage.0.name (REGISTRY_MIDDLEWARE_STORAGE_0_NAME)"},
		{"s3 keys", "storage: {s3: {bucket: b, region: us-east-1, accelerate: true, usedualstack: true, usefipsendpoint: true, objectacl: bucket-owner-full-control, storageclass: standard_ia, loglevel: debugwithsigning, useragent: me, redirectendpoint: 'https://cdn.example.com', v4auth: true, multipartcopymaxconcurrency: 100}}\n", nil,
			"storage.s3.multipartcopymaxconcurrency", ""},
		{"s3 accelerate path-style", "storage: {s3: {bucket: b, region: r, accelerate: true, forcepathstyle: true}}\n", nil, "", "storage.s3.accelerate"},
		{"s3 loglevel off", "storage: {s3: {bucket: b, region: r, loglevel: off}}\n", nil, "", ""},
		{"s3 storage class NONE", "storage: {s3: {bucket: b, region: r, storageclass: NONE}}\n", nil, "", ""},
		{"s3 bad storage class", "storage: {s3: {bucket: b, region: r, storageclass: GLACIER}}\n", nil, "", "storage.s3.storageclass"},
		{"s3 bad acl", "storage: {s3: {bucket: b, region: r, objectacl: everyone}}\n", nil, "", "storage.s3.objectacl"},
		{"s3 bad loglevel", "storage: {s3: {bucket: b, region: r, loglevel: chatty}}\n", nil, "", "storage.s3.loglevel"},
		{"s3 v2 signatures", "storage: {s3: {bucket: b, regionendpoint: 'http://minio:9000', v4auth: false}}\n", nil, "", "storage.s3.v4auth"},
		{"s3 redirect endpoint with a path", "storage: {s3: {bucket: b, region: r, redirectendpoint: 'https://cdn/x'}}\n", nil, "", "storage.s3.redirectendpoint"},
		{"gcs useragent", "storage: {gcs: {bucket: b, useragent: me, maxconcurrency: 8}}\n", nil, "", ""},
		{"azure retries", "storage: {azure: {accountname: a, accountkey: a2V5, container: c, max_retries: 3, retry_delay: 1s}}\n", nil, "storage.azure.max_retries", ""},
		{"azure retries from env", "storage: {azure: {accountname: a, accountkey: a2V5, container: c}}\n", []string{"REGISTRY_STORAGE_AZURE_MAX_RETRIES=3"}, "storage.azure.max_retries (REGISTRY_STORAGE_AZURE_MAX_RETRIES)", ""},
		{"azure realm", "storage: {azure: {accountname: a, container: c, realm: core.chinacloudapi.cn, skipverify: true}}\n", nil, "", ""},
		{"azure realm and serviceurl", "storage: {azure: {accountname: a, container: c, realm: x, serviceurl: 'https://a.blob.x/'}}\n", nil, "", "storage.azure.realm"},
		{"azure shared key without key", "storage: {azure: {accountname: a, container: c, credentials: {type: shared_key}}}\n", nil, "", "storage.azure.accountkey"},
		{"azure client secret incomplete", "storage: {azure: {accountname: a, container: c, credentials: {type: client_secret, clientid: x}}}\n", nil, "", "storage.azure.credentials.tenantid"},
		{"azure unknown credentials", "storage: {azure: {accountname: a, container: c, credentials: {type: sas}}}\n", nil, "", "storage.azure.credentials.type"},
		{"azure default", "storage: {azure: {accountname: a, container: c, credentials: {type: default}}}\n", nil, "", ""},
		{"azure connection string", "storage: {azure: {accountname: a, container: c, connectionstring: x}}\n", nil, "storage.azure.connectionstring", ""},
		{"unknown key", fs + "storage: {s3x: {}}\n", nil, "", "storage.s3x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(strings.NewReader(tc.yml), tc.env)
			if tc.fail != "" {
				if err == nil {
					t.Fatalf("started; warnings %s", warnings(c))
				}
				key, frag, _ := strings.Cut(tc.fail, ": ")
				for _, p := range Errors(err) {
					if (p.Key == key || p.Key+" ("+p.Source+")" == key) && strings.Contains(p.Msg, frag) {
						return
					}
				}
				t.Fatalf("no problem names %q:\n%v", tc.fail, err)
			}
			if err != nil {
				t.Fatal(err)
			}
			w := warnings(c)
			if tc.warn == "" {
				if w != "" {
					t.Errorf("unexpected warnings: %s", w)
				}
				return
			}
			key, frag, _ := strings.Cut(tc.warn, ": ")
			for _, n := range c.Ignored {
				if n.Level >= slog.LevelWarn && strings.HasPrefix(n.Key, key) && strings.Contains(n.Reason, frag) {
					return
				}
			}
			t.Errorf("no warning names %q:\n%s", tc.warn, strings.ReplaceAll(w, "|", "\n"))
		})
	}
}

// TestDistributionStorageEnv: REGISTRY_STORAGE selects the driver as in CNCF Distribution
// (applied before the REGISTRY_STORAGE_* variables whatever their order in the
// environment, dropping every driver section of the file, that driver's own parameters
// included), naming a driver's key selects it, and two drivers are an error.
func TestDistributionStorageEnv(t *testing.T) {
	const file = "storage:\n  filesystem: {rootdirectory: /r}\n  s3: {bucket: yaml, rootdirectory: /yaml}\n  delete: {enabled: true}\n"
	c, err := Load(strings.NewReader(strings.Replace(file, "  s3: {bucket: yaml, rootdirectory: /yaml}\n", "", 1)),
		[]string{"REGISTRY_STORAGE_S3_BUCKET=b", "REGISTRY_STORAGE_S3_REGION=us-east-1", "REGISTRY_STORAGE=s3"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.Filesystem != nil || c.Storage.S3 == nil || c.Storage.S3.Bucket != "b" || !c.Storage.Delete.Enabled {
		t.Errorf("storage: %+v", c.Storage)
	}
	if w := warnings(c); !strings.Contains(w, "storage.filesystem (file): replaced by REGISTRY_STORAGE=s3") {
		t.Errorf("warnings: %s", w)
	}

	// The file's own s3 section is dropped too: its rootdirectory does not apply.
	c, err = Load(strings.NewReader("storage:\n  s3: {bucket: yaml, region: r, rootdirectory: /yaml}\n"),
		[]string{"REGISTRY_STORAGE=S3", "REGISTRY_STORAGE_S3_BUCKET=env", "REGISTRY_STORAGE_S3_REGION=r"})
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Storage.S3; s.Bucket != "env" || s.RootDirectory != "" {
		t.Errorf("s3: %+v", s)
	}

	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"driver key beside the file's driver", []string{"REGISTRY_STORAGE_S3_BUCKET=b"}, "exactly one of"},
		{"driver registryd lacks", []string{"REGISTRY_STORAGE=swift"}, `no "swift" storage driver`},
		{"parameters missing", []string{"REGISTRY_STORAGE=gcs"}, "storage.gcs.bucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader("storage: {filesystem: {rootdirectory: /r}}\n"), tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestDistributionAuthEnv: REGISTRY_AUTH=<type> replaces the file's authentication type.
func TestDistributionAuthEnv(t *testing.T) {
	c, err := Load(strings.NewReader("auth: {token: {realm: r, service: s, issuer: i, jwks: /j}}\n"),
		[]string{"REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd", "REGISTRY_AUTH=htpasswd"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Token != nil || c.Auth.Htpasswd == nil || c.Auth.Htpasswd.Path != "/auth/htpasswd" {
		t.Errorf("auth: %+v", c.Auth)
	}
	c, err = Load(strings.NewReader("auth: {htpasswd: {path: /p}}\n"), []string{"REGISTRY_AUTH=none"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.Htpasswd != nil || c.Auth.None == nil {
		t.Errorf("auth: %+v", c.Auth)
	}
}

// TestDistributionShortFormsAndElements: Distribution's short forms "storage: inmemory"
// and "auth: none", and variables naming one item of a list or one key of a map.
func TestDistributionShortFormsAndElements(t *testing.T) {
	c, err := Load(strings.NewReader("storage: inmemory\nauth: none\nlog: {fields: {service: registry}}\n"), []string{
		"REGISTRY_LOG_FIELDS_ENVIRONMENT=production",
		"REGISTRY_HTTP_TLS_CERTIFICATE=/c", "REGISTRY_HTTP_TLS_KEY=/k",
		"REGISTRY_HTTP_TLS_CLIENTCAS_0=/a.pem", "REGISTRY_HTTP_TLS_CLIENTCAS_1=/b.pem",
		"REGISTRY_HTTP_HEADERS_X-FRAME-OPTIONS=[DENY]",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.InMemory == nil || c.Storage.Filesystem != nil || c.Auth.None == nil {
		t.Errorf("storage %+v, auth %+v", c.Storage, c.Auth)
	}
	if c.Log.Fields["service"] != "registry" || c.Log.Fields["environment"] != "production" {
		t.Errorf("log.fields %v", c.Log.Fields)
	}
	if got := strings.Join(c.HTTP.TLS.ClientCAs, ","); got != "/a.pem,/b.pem" {
		t.Errorf("http.tls.clientcas %q", got)
	}
	if got := c.HTTP.Headers["x-frame-options"]; len(got) != 1 || got[0] != "DENY" {
		t.Errorf("http.headers %v", c.HTTP.Headers)
	}
	for _, tc := range []struct {
		yml  string
		env  []string
		want string
	}{
		{"storage: swift\n", nil, `no "swift" storage driver`},
		{"auth: silly\n", nil, "auth.silly (line 1)"},
		{"", []string{"REGISTRY_HTTP_TLS_CLIENTCAS_3=/a.pem"}, "http.tls.clientcas.3 (REGISTRY_HTTP_TLS_CLIENTCAS_3): index 3"},
	} {
		_, err := Load(strings.NewReader(tc.yml), tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q %v: error %v, want %q", tc.yml, tc.env, err, tc.want)
		}
	}
}

// TestDistributionTableInREADME: every key of the README's Distribution table has the
// status the table gives it: a supported key is a registryd key, a warned one is accepted
// with a warning, a refused one stops the start.
func TestDistributionTableInREADME(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var known []string
	knownPaths(reflect.TypeFor[Config](), "", &known)
	isKnown := func(k string) bool { return slices.Contains(known, k) }
	// Typed sections whose warning or refusal comes from applyDistribution and
	// validateDistribution rather than from the tables of keys.go.
	typedWarned := func(k string) bool { return k == "proxy" || strings.HasPrefix(k, "proxy.") }
	typedRefused := func(k string) bool { return strings.HasPrefix(k, "middleware.") || k == "policy.repository.classes" }
	in, rows := false, 0
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "## ") {
			in = strings.HasPrefix(line, "## Drop-in for CNCF Distribution")
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		// Key names outside parentheses; later ones are siblings of the first.
		keyCell, _, _ := strings.Cut(cells[1], "(")
		var keys []string
		for i, part := range strings.Split(keyCell, "`") {
			if i%2 == 0 || strings.TrimSpace(part) == "" {
				continue
			}
			if len(keys) > 0 && !strings.Contains(part, ".") {
				first := keys[0]
				if j := strings.LastIndexByte(first, '.'); j >= 0 {
					part = first[:j+1] + part
				}
			}
			keys = append(keys, part)
		}
		status := strings.TrimSpace(cells[2])
		for _, k := range keys {
			rows++
			parent := reflect.TypeFor[struct{}]()
			kind, msg := classifyUnknown(k, parent)
			switch {
			case strings.HasPrefix(status, "supported"):
				if !isKnown(k) {
					t.Errorf("README: %s supported, but config has no such key", k)
				}
			case status == "warned":
				if kind != unknownDistribution && !typedWarned(k) {
					t.Errorf("README: %s warned, but config says %v: %s", k, kind, msg)
				}
			case status == "refused":
				if kind != unknownSecurity && !typedRefused(k) {
					t.Errorf("README: %s refused, but config says %v: %s", k, kind, msg)
				}
			default:
				t.Errorf("README: %s has status %q", k, status)
			}
		}
	}
	if rows < 80 {
		t.Errorf("README's Distribution table: %d keys read, want the whole reference", rows)
	}
}
