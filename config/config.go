// Package config holds registryd's typed configuration: a CNCF Distribution compatible
// config.yml (version 0.1), overridable key by key with REGISTRY_* environment variables
// (REGISTRY_STORAGE_S3_BUCKET overrides storage.s3.bucket), validated at start-up.
//
// Every problem is reported at once, each naming its key path (and the file line or the
// variable it came from) and what is allowed there; see Load for how keys that registryd
// does not know are treated (CNCF Distribution's own keys, Kubernetes service links).
//
// Who may import it: cmd/registryd, and the concrete drivers (each takes its own section).
// It depends on nothing of registryd.
package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
)

// Config is the whole configuration. The zero value is not valid; use Default or Load.
type Config struct {
	Version string  `yaml:"version"`
	Log     Log     `yaml:"log"`
	Storage Storage `yaml:"storage"`
	HTTP    HTTP    `yaml:"http"`
	Limits  Limits  `yaml:"limits"`
	// Auth controls access (default: none, anyone may do anything).
	Auth Auth `yaml:"auth"`
	// Validation controls how strictly pushed manifests are checked.
	Validation Validation `yaml:"validation"`
	// LogLevel, Middleware, Proxy and Policy are CNCF Distribution's sections that
	// registryd reads only to honour them safely (see config/distribution.go).
	LogLevel   string                       `yaml:"loglevel"`
	Middleware map[string][]MiddlewareEntry `yaml:"middleware"`
	Proxy      Proxy                        `yaml:"proxy"`
	Policy     Policy                       `yaml:"policy"`

	// Ignored lists what Load accepted without acting on it: CNCF Distribution settings
	// registryd does not implement (Warn) and REGISTRY_* variables that are no
	// configuration key, such as Kubernetes service links (Debug). Not a setting.
	Ignored []Notice `yaml:"-"`
	// sources maps a key path to the variable that set it, for error messages.
	sources map[string]string
}

// Validation controls manifest validation.
type Validation struct {
	Manifests ManifestValidation `yaml:"manifests"`
}

// ManifestValidation controls manifest reference checks.
type ManifestValidation struct {
	// AllowSparse accepts image manifests whose layers, and indexes whose child manifests,
	// are not (yet) in the repository: mirrors of a single platform of a multi-platform
	// image, non-distributable layers. The config blob is always required. Default false:
	// a missing reference is 400 MANIFEST_BLOB_UNKNOWN / MANIFEST_UNKNOWN.
	AllowSparse bool `yaml:"allowsparse"`
}

// Log configures logging.
type Log struct {
	// Level is one of debug, info, warn, error, in any case (default info; Distribution's
	// deprecated top-level loglevel is read when it is unset).
	Level string `yaml:"level"`
	// Formatter is json (default) or text; Distribution's logstash is written as json.
	Formatter string `yaml:"formatter"`
	// Fields are added to every log line (CNCF Distribution's log.fields).
	Fields map[string]any `yaml:"fields"`
	// AccessLog can turn off the request lines (CNCF Distribution's log.accesslog).
	AccessLog AccessLog `yaml:"accesslog"`
}

// HTTP configures the listener.
type HTTP struct {
	// Addr is the listen address (default ":5000").
	Addr string `yaml:"addr"`
	// Prefix is the path the registry is served under, with leading and trailing slashes
	// (/my/registry/): /my/registry/v2/ is the API; Location and Link headers carry it.
	Prefix string `yaml:"prefix"`
	// Net is the listener's network: tcp (default; Distribution's unix is refused).
	Net string `yaml:"net"`
	// Secret signs upload state tokens. Every replica sharing a bucket must use the same
	// secret. When empty a random one is generated at start (fine for a single process).
	Secret string `yaml:"secret"`
	// DrainDelay is how long, after SIGTERM, /readyz answers 503 while the listeners keep
	// serving, so that load balancers stop sending new requests before they are refused
	// (default 0; the Helm chart sets it for Kubernetes).
	DrainDelay time.Duration `yaml:"draindelay"`
	// DrainTimeout bounds the drain of in-flight requests once the listeners close
	// (default 30s).
	DrainTimeout time.Duration `yaml:"draintimeout"`
	// Headers are added to every response of the registry listener (CNCF Distribution's
	// http.headers), e.g. X-Content-Type-Options: [nosniff].
	Headers map[string][]string `yaml:"headers"`
	// Debug configures the metrics and health listener.
	Debug Debug `yaml:"debug"`
	// TLS serves HTTPS on Addr when its certificate is set (see config/tls.go).
	TLS TLS `yaml:"tls"`
	// HTTP2 can turn HTTP/2 off on the TLS listener.
	HTTP2 HTTP2 `yaml:"http2"`
	// Host is the externally reachable URL (https://registry.example.com), the base of
	// absolute Location headers.
	Host string `yaml:"host"`
	// RelativeURLs keeps Location headers relative when true, makes them absolute when
	// false; unset: absolute when Host is set, else relative.
	RelativeURLs *bool `yaml:"relativeurls"`
}

// Debug configures an optional second listener for /metrics, /healthz and /readyz. When Addr
// is empty these are served on the main listener.
type Debug struct {
	Addr string `yaml:"addr"`
}

// Limits bounds request sizes and pagination.
type Limits struct {
	// MaxManifestBytes is the largest manifest body accepted (default 4 MiB).
	MaxManifestBytes int64 `yaml:"maxmanifestbytes"`
	// MaxListEntries caps n on tags list, catalog and referrers (default 1000).
	MaxListEntries int `yaml:"maxlistentries"`
}

// Storage selects exactly one backend and registry-level storage switches.
type Storage struct {
	Filesystem  *Filesystem `yaml:"filesystem"`
	InMemory    *InMemory   `yaml:"inmemory"`
	S3          *S3         `yaml:"s3"`
	GCS         *GCS        `yaml:"gcs"`
	Azure       *Azure      `yaml:"azure"`
	Delete      Delete      `yaml:"delete"`
	Redirect    Redirect    `yaml:"redirect"`
	Maintenance Maintenance `yaml:"maintenance"`
	Retry       Retry       `yaml:"retry"`
	// GC configures online garbage collection and retention (see config/gc.go).
	GC GC `yaml:"gc"`
}

// Delete enables DELETE of manifests, tags and blobs (default off, as in Distribution).
type Delete struct {
	Enabled bool `yaml:"enabled"`
}

// Redirect controls redirects of blob GETs to backend pre-signed URLs. They are off by
// default: a redirected response comes from the backend and cannot carry
// Docker-Content-Digest, and clients must reach the backend. Enable turns them on for
// drivers that can sign; Disable (CNCF Distribution's key) forces them off.
type Redirect struct {
	Enable  bool `yaml:"enable"`
	Disable bool `yaml:"disable"`
	// Expiry is the lifetime of a signed URL (default 20m).
	Expiry time.Duration `yaml:"expiry"`
}

// Maintenance holds operational switches.
type Maintenance struct {
	ReadOnly      ReadOnly      `yaml:"readonly"`
	UploadPurging UploadPurging `yaml:"uploadpurging"`
}

// UploadPurging removes, every Interval, the uploads started more than Age ago, with their
// backend sessions (S3's incomplete multipart uploads included), as CNCF Distribution does.
// Every replica may run it; purging is idempotent.
type UploadPurging struct {
	// Enabled turns purging on or off (default on).
	Enabled *bool `yaml:"enabled"`
	// Age is how old an upload must be to be purged (default 168h).
	Age time.Duration `yaml:"age"`
	// Interval is the time between purges (default 24h); the first runs within a minute
	// of start-up (within Interval, when that is shorter).
	Interval time.Duration `yaml:"interval"`
	// DryRun logs how many uploads would be purged and removes nothing.
	DryRun bool `yaml:"dryrun"`
}

// ReadOnly rejects every write with 405 UNSUPPORTED when Enabled.
type ReadOnly struct {
	Enabled bool `yaml:"enabled"`
}

// Retry bounds retries of idempotent backend calls on throttling and transient failure.
type Retry struct {
	// MaxAttempts is the total number of attempts (default 4; 1 disables retries).
	MaxAttempts int `yaml:"maxattempts"`
	// BaseDelay is the first backoff (default 100ms); it doubles with full jitter.
	BaseDelay time.Duration `yaml:"basedelay"`
	// MaxDelay caps a single backoff (default 2s).
	MaxDelay time.Duration `yaml:"maxdelay"`
}

// Filesystem stores objects as files under RootDirectory.
type Filesystem struct {
	// RootDirectory is the directory holding the data (default ./data).
	RootDirectory string `yaml:"rootdirectory"`
}

// InMemory keeps everything in process memory; for tests and demos only.
type InMemory struct{}

// S3 configures the Amazon S3 (or S3-compatible) driver. Keys match CNCF Distribution's.
type S3 struct {
	Bucket         string `yaml:"bucket"`
	Region         string `yaml:"region"`
	RegionEndpoint string `yaml:"regionendpoint"` // any S3-compatible endpoint URL (MinIO, Ceph, R2)
	ForcePathStyle bool   `yaml:"forcepathstyle"`
	// AccessKey and SecretKey are optional: without them the SDK's default chain is used
	// (environment, shared profile, IRSA web identity, instance role).
	AccessKey    string `yaml:"accesskey"`
	SecretKey    string `yaml:"secretkey"`
	SessionToken string `yaml:"sessiontoken"`
	// RootDirectory prefixes every key.
	RootDirectory string `yaml:"rootdirectory"`
	// ChunkSize is the multipart part size in bytes (default 16 MiB, at least 5 MiB).
	ChunkSize int64 `yaml:"chunksize"`
	// MultipartConcurrency bounds the part buffers of one upload (default 4): one part
	// fills while the others upload, so memory per upload is at most ChunkSize ×
	// MultipartConcurrency. It is also the parallelism of multipart copies.
	MultipartConcurrency int `yaml:"multipartconcurrency"`
	// MultipartCopyThresholdSize: objects larger than this are copied with parallel
	// UploadPartCopy (default 32 MiB).
	MultipartCopyThresholdSize int64 `yaml:"multipartcopythresholdsize"`
	// MultipartCopyChunkSize is the part size of multipart copies (default 32 MiB).
	MultipartCopyChunkSize int64  `yaml:"multipartcopychunksize"`
	StorageClass           string `yaml:"storageclass"`
	Encrypt                bool   `yaml:"encrypt"`
	KeyID                  string `yaml:"keyid"`
	// Secure selects https for RegionEndpoint URLs without a scheme (default true).
	Secure     *bool `yaml:"secure"`
	SkipVerify bool  `yaml:"skipverify"`
	// ChecksumDisabled stops the SDK sending default CRC checksum headers, for
	// S3-compatible stores that reject them.
	ChecksumDisabled bool `yaml:"checksumdisabled"`
	// MemoryBudget caps the bytes of part buffers across all uploads of the process
	// (default 128 MiB).
	MemoryBudget int64 `yaml:"memorybudget"`
	// Accelerate uses S3 Transfer Acceleration endpoints.
	Accelerate bool `yaml:"accelerate"`
	// UseDualStack uses AWS's dual-stack (IPv4 and IPv6) endpoints.
	UseDualStack bool `yaml:"usedualstack"`
	// UseFIPSEndpoint uses AWS's FIPS 140 endpoints.
	UseFIPSEndpoint bool `yaml:"usefipsendpoint"`
	// ObjectACL is the canned ACL of every object written (default: none sent, the
	// bucket's default).
	ObjectACL string `yaml:"objectacl"`
	// LogLevel logs the SDK's requests at debug level (Distribution's names: off, debug,
	// debugwithsigning, debugwithhttpbody, debugwithrequestretries, debugwithrequesterrors,
	// debugwitheventstreambody).
	LogLevel string `yaml:"loglevel"`
	// UserAgent is added to the User-Agent of S3 requests.
	UserAgent string `yaml:"useragent"`
	// RedirectEndpoint is the scheme://host[:port] that redirect URLs are signed for,
	// instead of RegionEndpoint.
	RedirectEndpoint string `yaml:"redirectendpoint"`
	// V4Auth must be true or unset: requests are signed with SigV4.
	V4Auth *bool `yaml:"v4auth"`
}

// GCS configures the Google Cloud Storage driver.
type GCS struct {
	Bucket        string `yaml:"bucket"`
	RootDirectory string `yaml:"rootdirectory"`
	// Endpoint overrides the API endpoint (fake-gcs-server, private endpoints). The
	// STORAGE_EMULATOR_HOST environment variable is honoured too.
	Endpoint string `yaml:"endpoint"`
	// KeyFile is a service account JSON key file; Credentials is the JSON inline. Without
	// either, Application Default Credentials are used (GKE workload identity).
	// Credentials may also be written as a YAML mapping of the JSON's fields, as
	// Distribution documents it.
	KeyFile     string         `yaml:"keyfile"`
	Credentials GCSCredentials `yaml:"credentials"`
	// ChunkSize is the part size in bytes (default 16 MiB).
	ChunkSize int64 `yaml:"chunksize"`
	// MaxConcurrency is the number of parts of one upload in flight (default 4).
	MaxConcurrency int `yaml:"maxconcurrency"`
	// UserAgent is added to the User-Agent of GCS requests.
	UserAgent string `yaml:"useragent"`
}

// Azure configures the Azure Blob Storage driver.
type Azure struct {
	AccountName string `yaml:"accountname"`
	// AccountKey is optional: without it (and without Credentials) the default Azure
	// credential chain is used (environment, workload identity, managed identity).
	AccountKey string `yaml:"accountkey"`
	// Credentials selects the authentication as in Distribution v3 (see
	// AzureCredentials and EffectiveType).
	Credentials *AzureCredentials `yaml:"credentials"`
	// Realm is the endpoint suffix of sovereign clouds (core.chinacloudapi.cn): the
	// service URL is then https://<accountname>.blob.<realm>/ (default core.windows.net).
	Realm string `yaml:"realm"`
	// SkipVerify skips TLS certificate verification of the service.
	SkipVerify bool   `yaml:"skipverify"`
	Container  string `yaml:"container"`
	// ServiceURL overrides https://<accountname>.blob.core.windows.net (Azurite,
	// sovereign clouds). Endpoint is accepted as an alias.
	ServiceURL    string `yaml:"serviceurl"`
	Endpoint      string `yaml:"endpoint"`
	RootDirectory string `yaml:"rootdirectory"`
	// ChunkSize is the block size in bytes (default 16 MiB).
	ChunkSize int64 `yaml:"chunksize"`
	// MaxConcurrency is the number of blocks of one upload in flight (default 4).
	MaxConcurrency int `yaml:"maxconcurrency"`
}

// Default returns the configuration used when no file is given: filesystem storage under
// ./data, listening on :5000.
func Default() *Config {
	c := &Config{Version: "0.1"}
	c.Storage.Filesystem = &Filesystem{RootDirectory: "./data"}
	c.applyDefaults()
	return c
}

// Load reads YAML from r (may be nil for defaults only), applies REGISTRY_* overrides from
// environ (as os.Environ returns), fills defaults and validates. It reports every problem
// at once: the error joins one *Error per invalid setting.
//
// Keys registryd does not know are treated alike in the file and in the environment:
//   - a key of CNCF Distribution that registryd does not implement (log.accesslog,
//     storage.cache, notifications, health, ...) is accepted and listed in Config.Ignored
//     at Warn level, to be logged at start-up;
//   - a security-relevant section registryd cannot honour (an auth type it lacks,
//     middleware, http.tls where not implemented) is an error: serving without it would
//     silently drop a protection the operator asked for;
//   - any other unknown key is an error naming the key path and the closest known key.
//
// A REGISTRY_* variable whose name is no configuration key at all — Kubernetes injects
// REGISTRY_PORT=tcp://..., REGISTRY_SERVICE_HOST and the like into every pod of a
// namespace holding a Service named "registry" — is ignored and listed at Debug level.
func Load(r io.Reader, environ []string) (*Config, error) {
	c := &Config{}
	var errs []error
	if r != nil {
		data, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		errs = append(errs, decodeYAML(c, data)...)
	}
	errs = append(errs, applyEnv(c, environ)...)
	c.applyDistribution()
	if c.Storage.Filesystem == nil && c.Storage.InMemory == nil && c.Storage.S3 == nil &&
		c.Storage.GCS == nil && c.Storage.Azure == nil {
		c.Storage.Filesystem = &Filesystem{}
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// LoadFile is Load on the named file, with the process environment.
func LoadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	return Load(f, os.Environ())
}

func (c *Config) applyDefaults() {
	if c.Version == "" {
		c.Version = "0.1"
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = ":5000"
	}
	if c.HTTP.DrainTimeout == 0 {
		c.HTTP.DrainTimeout = 30 * time.Second
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Formatter == "" {
		c.Log.Formatter = "json"
	}
	if c.Limits.MaxManifestBytes == 0 {
		c.Limits.MaxManifestBytes = 4 << 20
	}
	if c.Limits.MaxListEntries == 0 {
		c.Limits.MaxListEntries = 1000
	}
	if c.Storage.Redirect.Expiry == 0 {
		c.Storage.Redirect.Expiry = 20 * time.Minute
	}
	r := &c.Storage.Retry
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 4
	}
	if r.BaseDelay == 0 {
		r.BaseDelay = 100 * time.Millisecond
	}
	if r.MaxDelay == 0 {
		r.MaxDelay = 2 * time.Second
	}
	up := &c.Storage.Maintenance.UploadPurging
	if up.Enabled == nil {
		on := true
		up.Enabled = &on
	}
	if up.Age == 0 {
		up.Age = 168 * time.Hour
	}
	if up.Interval == 0 {
		up.Interval = 24 * time.Hour
	}
	if fs := c.Storage.Filesystem; fs != nil && fs.RootDirectory == "" {
		fs.RootDirectory = "./data"
	}
	c.Storage.GC.applyDefaults()
}

// Backend limits checked at start-up, so that a setting a backend would refuse fails here
// and not on the first push or pull.
const (
	// maxSignedURLExpiry bounds storage.redirect.expiry: S3 SigV4 and GCS V4 signed URLs
	// are refused beyond 7 days; Azure SAS has no hard limit, and the same bound is kept.
	maxSignedURLExpiry = 7 * 24 * time.Hour
	s3MinPart          = 5 << 20
	s3MaxPart          = 5 << 30
	gcsMinPart         = 256 << 10
	gcsMaxPart         = 1 << 30
	gcsMaxConcurrency  = 64
	azureMaxBlock      = 4000 << 20
	minSecretLen       = 16
)

// Validate reports every invalid setting at once (the error joins one *Error each), naming
// its key and what is allowed. Sections kept in their own files hook in with one line:
// v.add(c.Section.validate()).
func (c *Config) Validate() error {
	v := &validator{sources: c.sources}
	if c.Version != "0.1" {
		v.errorf("version", "must be 0.1, got %q", c.Version)
	}
	var backends []string
	for _, b := range []struct {
		name string
		set  bool
	}{{"filesystem", c.Storage.Filesystem != nil}, {"inmemory", c.Storage.InMemory != nil},
		{"s3", c.Storage.S3 != nil}, {"gcs", c.Storage.GCS != nil}, {"azure", c.Storage.Azure != nil}} {
		if b.set {
			backends = append(backends, b.name)
		}
	}
	if len(backends) != 1 {
		v.errorf("storage", "exactly one of filesystem, inmemory, s3, gcs, azure must be set, got %d (%s)",
			len(backends), strings.Join(backends, ", "))
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.formatter", c.Log.Formatter, "json", "text")
	v.listenAddr("http.addr", c.HTTP.Addr)
	if c.HTTP.Debug.Addr != "" {
		v.listenAddr("http.debug.addr", c.HTTP.Debug.Addr)
	}
	v.positive("http.draintimeout", c.HTTP.DrainTimeout)
	v.notNegative("http.draindelay", c.HTTP.DrainDelay)
	for name := range c.HTTP.Headers {
		if !validHeaderName(name) {
			v.errorf("http.headers."+name, "not a valid HTTP header name")
		}
	}
	if c.Limits.MaxManifestBytes < 1 {
		v.errorf("limits.maxmanifestbytes", "must be at least 1, got %d", c.Limits.MaxManifestBytes)
	}
	if c.Limits.MaxListEntries < 1 {
		v.errorf("limits.maxlistentries", "must be at least 1, got %d", c.Limits.MaxListEntries)
	}
	v.positive("storage.redirect.expiry", c.Storage.Redirect.Expiry)
	if c.Storage.Redirect.Expiry > maxSignedURLExpiry {
		v.errorf("storage.redirect.expiry", "must be at most %s (S3 and GCS refuse signed URLs valid for longer), got %s",
			maxSignedURLExpiry, c.Storage.Redirect.Expiry)
	}
	up := c.Storage.Maintenance.UploadPurging
	v.positive("storage.maintenance.uploadpurging.age", up.Age)
	v.positive("storage.maintenance.uploadpurging.interval", up.Interval)
	rt := c.Storage.Retry
	if rt.MaxAttempts < 1 {
		v.errorf("storage.retry.maxattempts", "must be at least 1 (1 disables retries), got %d", rt.MaxAttempts)
	}
	v.positive("storage.retry.basedelay", rt.BaseDelay)
	v.positive("storage.retry.maxdelay", rt.MaxDelay)
	if rt.MaxDelay > 0 && rt.BaseDelay > rt.MaxDelay {
		v.errorf("storage.retry.basedelay", "must not exceed storage.retry.maxdelay (%s), got %s", rt.MaxDelay, rt.BaseDelay)
	}
	if fs := c.Storage.Filesystem; fs != nil && fs.RootDirectory == "" {
		v.errorf("storage.filesystem.rootdirectory", "required")
	}
	v.add(c.HTTP.validateTLS())
	v.add(c.Auth.validate())
	v.add(c.Storage.GC.validate())
	v.add(c.validateDistribution())
	if s := c.Storage.S3; s != nil {
		s.validate(v)
	}
	if g := c.Storage.GCS; g != nil {
		g.validate(v)
	}
	if a := c.Storage.Azure; a != nil {
		a.validate(v)
	}
	return v.err()
}

func (s *S3) validate(v *validator) {
	if s.Bucket == "" {
		v.errorf("storage.s3.bucket", "required")
	}
	if s.Region == "" && s.RegionEndpoint == "" {
		v.errorf("storage.s3.region", "required unless storage.s3.regionendpoint is set")
	}
	if s.RegionEndpoint != "" {
		v.url("storage.s3.regionendpoint", s.RegionEndpoint, true)
	}
	v.sizeRange("storage.s3.chunksize", s.ChunkSize, s3MinPart, s3MaxPart, "an S3 part")
	v.sizeRange("storage.s3.multipartcopychunksize", s.MultipartCopyChunkSize, s3MinPart, s3MaxPart, "an S3 part")
	if s.MultipartCopyThresholdSize < 0 || s.MultipartCopyThresholdSize > s3MaxPart {
		v.errorf("storage.s3.multipartcopythresholdsize", "must be between 0 and %s, got %d", sizeString(s3MaxPart), s.MultipartCopyThresholdSize)
	}
	if s.MultipartConcurrency < 0 {
		v.errorf("storage.s3.multipartconcurrency", "must be at least 1 (0: default 4), got %d", s.MultipartConcurrency)
	}
	chunk := s.ChunkSize
	if chunk == 0 {
		chunk = 16 << 20
	}
	if s.MemoryBudget < 0 || (s.MemoryBudget > 0 && s.MemoryBudget < chunk) {
		v.errorf("storage.s3.memorybudget", "must be at least storage.s3.chunksize (%s), got %d", sizeString(chunk), s.MemoryBudget)
	}
	if (s.AccessKey == "") != (s.SecretKey == "") {
		v.errorf("storage.s3.accesskey", "storage.s3.accesskey and storage.s3.secretkey: set both or neither")
	}
	if s.SessionToken != "" && s.AccessKey == "" {
		v.errorf("storage.s3.sessiontoken", "needs storage.s3.accesskey and storage.s3.secretkey")
	}
}

func (g *GCS) validate(v *validator) {
	if g.Bucket == "" {
		v.errorf("storage.gcs.bucket", "required")
	}
	if g.KeyFile != "" && g.Credentials != "" {
		v.errorf("storage.gcs.keyfile", "set storage.gcs.keyfile or storage.gcs.credentials, not both")
	}
	if g.Endpoint != "" && strings.Contains(g.Endpoint, "://") {
		v.url("storage.gcs.endpoint", g.Endpoint, false)
	}
	v.sizeRange("storage.gcs.chunksize", g.ChunkSize, gcsMinPart, gcsMaxPart, "a part")
	if g.MaxConcurrency < 0 || g.MaxConcurrency > gcsMaxConcurrency {
		v.errorf("storage.gcs.maxconcurrency", "must be between 1 and %d (0: default 4), got %d", gcsMaxConcurrency, g.MaxConcurrency)
	}
}

func (a *Azure) validate(v *validator) {
	if a.AccountName == "" {
		v.errorf("storage.azure.accountname", "required")
	}
	if a.Container == "" {
		v.errorf("storage.azure.container", "required")
	}
	if a.ServiceURL != "" && a.Endpoint != "" && a.ServiceURL != a.Endpoint {
		v.errorf("storage.azure.endpoint", "is an alias of storage.azure.serviceurl: set one of them")
	}
	for _, k := range []struct{ key, val string }{{"storage.azure.serviceurl", a.ServiceURL}, {"storage.azure.endpoint", a.Endpoint}} {
		if k.val == "" || !v.url(k.key, k.val, false) || a.AccountName == "" {
			continue
		}
		// The service URL names the account: in its host (https://<account>.blob.core.windows.net/)
		// or, path-style, as its first path segment (Azurite: http://127.0.0.1:10000/<account>).
		u, _ := url.Parse(k.val)
		first, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
		if !strings.HasPrefix(u.Hostname(), a.AccountName+".") && first != a.AccountName {
			v.errorf(k.key, "must name the account %q: https://%s.blob.core.windows.net/, or path-style for Azurite and other emulators: %s://%s/%s",
				a.AccountName, a.AccountName, u.Scheme, u.Host, a.AccountName)
		}
	}
	v.sizeRange("storage.azure.chunksize", a.ChunkSize, 1, azureMaxBlock, "an Azure block")
	if a.MaxConcurrency < 0 {
		v.errorf("storage.azure.maxconcurrency", "must be at least 1 (0: default 4), got %d", a.MaxConcurrency)
	}
}
