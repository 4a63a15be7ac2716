// Package config holds registryd's typed configuration: a CNCF Distribution compatible
// config.yml (version 0.1), overridable key by key with REGISTRY_* environment variables
// (REGISTRY_STORAGE_S3_BUCKET overrides storage.s3.bucket), validated at start-up.
//
// Who may import it: cmd/registryd, and the concrete drivers (each takes its own section).
// It depends on nothing of registryd.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
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
	// Level is one of debug, info, warn, error (default info).
	Level string `yaml:"level"`
	// Formatter is json (default) or text.
	Formatter string `yaml:"formatter"`
}

// HTTP configures the listener.
type HTTP struct {
	// Addr is the listen address (default ":5000").
	Addr string `yaml:"addr"`
	// Secret signs upload state tokens. Every replica sharing a bucket must use the same
	// secret. When empty a random one is generated at start (fine for a single process).
	Secret string `yaml:"secret"`
	// DrainTimeout bounds graceful shutdown (default 30s).
	DrainTimeout time.Duration `yaml:"draintimeout"`
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
	KeyFile     string `yaml:"keyfile"`
	Credentials string `yaml:"credentials"`
	// ChunkSize is the part size in bytes (default 16 MiB).
	ChunkSize int64 `yaml:"chunksize"`
	// MaxConcurrency is the number of parts of one upload in flight (default 4).
	MaxConcurrency int `yaml:"maxconcurrency"`
}

// Azure configures the Azure Blob Storage driver.
type Azure struct {
	AccountName string `yaml:"accountname"`
	// AccountKey is optional: without it the default Azure credential chain is used
	// (environment, workload identity, managed identity).
	AccountKey string `yaml:"accountkey"`
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
// environ (as os.Environ returns), fills defaults and validates.
func Load(r io.Reader, environ []string) (*Config, error) {
	c := &Config{}
	if r != nil {
		dec := yaml.NewDecoder(r)
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if err := applyEnv(c, environ); err != nil {
		return nil, err
	}
	if c.Storage.Filesystem == nil && c.Storage.InMemory == nil && c.Storage.S3 == nil &&
		c.Storage.GCS == nil && c.Storage.Azure == nil {
		c.Storage.Filesystem = &Filesystem{}
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
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
}

// Validate reports the first invalid setting, naming its key.
func (c *Config) Validate() error {
	if c.Version != "0.1" {
		return fmt.Errorf("config: version: must be 0.1, got %q", c.Version)
	}
	n := 0
	for _, set := range []bool{c.Storage.Filesystem != nil, c.Storage.InMemory != nil,
		c.Storage.S3 != nil, c.Storage.GCS != nil, c.Storage.Azure != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("config: storage: exactly one of filesystem, inmemory, s3, gcs, azure must be set, got %d", n)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log.level: must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Formatter {
	case "json", "text":
	default:
		return fmt.Errorf("config: log.formatter: must be json or text, got %q", c.Log.Formatter)
	}
	if c.Limits.MaxManifestBytes < 0 {
		return errors.New("config: limits.maxmanifestbytes: must be positive")
	}
	if c.Limits.MaxListEntries < 0 {
		return errors.New("config: limits.maxlistentries: must be positive")
	}
	if up := c.Storage.Maintenance.UploadPurging; up.Age < 0 || up.Interval < 0 {
		return errors.New("config: storage.maintenance.uploadpurging: age and interval must be positive")
	}
	if err := c.HTTP.validateTLS(); err != nil {
		return err
	}
	if c.Storage.Retry.MaxAttempts < 1 {
		return errors.New("config: storage.retry.maxattempts: must be at least 1")
	}
	if err := c.Auth.validate(); err != nil {
		return err
	}
	if s := c.Storage.S3; s != nil {
		if s.Bucket == "" {
			return errors.New("config: storage.s3.bucket: required")
		}
		if s.Region == "" && s.RegionEndpoint == "" {
			return errors.New("config: storage.s3.region: required unless storage.s3.regionendpoint is set")
		}
		if s.ChunkSize != 0 && s.ChunkSize < 5<<20 {
			return fmt.Errorf("config: storage.s3.chunksize: must be at least 5242880 (5 MiB), got %d", s.ChunkSize)
		}
		if s.MultipartConcurrency < 0 {
			return errors.New("config: storage.s3.multipartconcurrency: must be positive")
		}
		if (s.AccessKey == "") != (s.SecretKey == "") {
			return errors.New("config: storage.s3.accesskey and storage.s3.secretkey: set both or neither")
		}
	}
	if g := c.Storage.GCS; g != nil {
		if g.Bucket == "" {
			return errors.New("config: storage.gcs.bucket: required")
		}
		if g.ChunkSize < 0 {
			return errors.New("config: storage.gcs.chunksize: must be positive")
		}
	}
	if a := c.Storage.Azure; a != nil {
		if a.AccountName == "" {
			return errors.New("config: storage.azure.accountname: required")
		}
		if a.Container == "" {
			return errors.New("config: storage.azure.container: required")
		}
		if a.ChunkSize < 0 {
			return errors.New("config: storage.azure.chunksize: must be positive")
		}
	}
	return nil
}

// applyEnv sets fields from REGISTRY_<PATH> variables, where PATH is the upper-cased yaml
// keys joined by "_" (REGISTRY_STORAGE_S3_BUCKET, REGISTRY_HTTP_SECRET). Naming a key of
// a backend section selects that backend.
func applyEnv(c *Config, environ []string) error {
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "REGISTRY_") {
			continue
		}
		if err := setPath(reflect.ValueOf(c).Elem(), strings.TrimPrefix(k, "REGISTRY_"), v); err != nil {
			return fmt.Errorf("config: %s: %w", k, err)
		}
	}
	return nil
}

var errUnknownKey = errors.New("no such configuration key")

// setPath walks struct v by the yaml tags matched against the "_"-joined upper-case key.
// Keys may contain no "_" themselves, so the split is unambiguous.
func setPath(v reflect.Value, key, val string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := strings.ToUpper(strings.Split(f.Tag.Get("yaml"), ",")[0])
		fv := v.Field(i)
		if key == name {
			return setScalar(fv, val)
		}
		rest, ok := strings.CutPrefix(key, name+"_")
		if !ok {
			continue
		}
		if fv.Kind() == reflect.Pointer {
			if fv.Type().Elem().Kind() != reflect.Struct {
				continue
			}
			if fv.IsNil() {
				fv.Set(reflect.New(fv.Type().Elem()))
			}
			fv = fv.Elem()
		}
		if fv.Kind() == reflect.Struct {
			return setPath(fv, rest, val)
		}
	}
	return errUnknownKey
}

func setScalar(fv reflect.Value, val string) error {
	if fv.Kind() == reflect.Pointer {
		if fv.Type().Elem().Kind() == reflect.Struct {
			// REGISTRY_STORAGE_INMEMORY= selects an empty section.
			if fv.IsNil() {
				fv.Set(reflect.New(fv.Type().Elem()))
			}
			return nil
		}
		p := reflect.New(fv.Type().Elem())
		if err := setScalar(p.Elem(), val); err != nil {
			return err
		}
		fv.Set(p)
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(val)
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("want a boolean: %w", err)
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64:
		if fv.Type() == reflect.TypeFor[time.Duration]() {
			d, err := time.ParseDuration(val)
			if err != nil {
				return fmt.Errorf("want a duration: %w", err)
			}
			fv.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer: %w", err)
		}
		fv.SetInt(n)
	case reflect.Slice:
		if fv.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported list of %s", fv.Type().Elem().Kind())
		}
		// A comma-separated list, or a YAML flow sequence ([a, b]) as Distribution takes.
		var items []string
		if strings.HasPrefix(strings.TrimSpace(val), "[") {
			if err := yaml.Unmarshal([]byte(val), &items); err != nil {
				return fmt.Errorf("want a list: %w", err)
			}
		} else {
			for _, s := range strings.Split(val, ",") {
				if s = strings.TrimSpace(s); s != "" {
					items = append(items, s)
				}
			}
		}
		fv.Set(reflect.ValueOf(items).Convert(fv.Type()))
	case reflect.Struct:
		return errUnknownKey
	default:
		return fmt.Errorf("unsupported kind %s", fv.Kind())
	}
	return nil
}
