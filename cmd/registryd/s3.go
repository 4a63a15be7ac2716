package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/logging"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/s3"
)

// s3DefaultRegion signs requests to S3-compatible endpoints configured without a region.
const s3DefaultRegion = "us-east-1"

// openS3 builds the S3 client of storage.s3 and the driver on it.
func openS3(ctx context.Context, cfg config.S3, rp driver.RetryPolicy) (*s3.Driver, error) {
	client, err := newS3Client(ctx, cfg)
	if err != nil {
		return nil, err
	}
	storageClass := cfg.StorageClass
	if storageClass == "NONE" {
		// Distribution's "send no storage class", for stores without classes.
		storageClass = ""
	}
	return s3.New(client, cfg.Bucket, s3.Options{
		ACL:              types.ObjectCannedACL(cfg.ObjectACL),
		PresignEndpoint:  cfg.RedirectEndpoint,
		RootDirectory:    cfg.RootDirectory,
		ChunkSize:        cfg.ChunkSize,
		Concurrency:      cfg.MultipartConcurrency,
		CopyThreshold:    cfg.MultipartCopyThresholdSize,
		CopyChunkSize:    cfg.MultipartCopyChunkSize,
		MemoryBudget:     cfg.MemoryBudget,
		StorageClass:     types.StorageClass(storageClass),
		Encrypt:          cfg.Encrypt,
		KMSKeyID:         cfg.KeyID,
		DisableChecksums: cfg.ChecksumDisabled,
		Retry:            rp,
	})
}

// newS3Client builds the S3 client of cfg. Credentials are the configured static keys,
// or else the SDK's default chain (environment, shared profile, IRSA web identity,
// container and instance roles). Distribution's endpoint switches (accelerate,
// usedualstack, usefipsendpoint), useragent and loglevel apply; the SDK's log goes to the
// logger of ctx (see withSDKLogger) at debug level. It makes no network call.
func newS3Client(ctx context.Context, cfg config.S3) (*awss3.Client, error) {
	endpoint, err := s3EndpointURL(cfg)
	if err != nil {
		return nil, err
	}
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		if cfg.SkipVerify {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{}
			}
			tr.TLSClientConfig.InsecureSkipVerify = true //nolint:gosec // explicitly configured
		}
	})
	loadOpts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRegion(cmp.Or(cfg.Region, s3DefaultRegion)),
		awsconfig.WithHTTPClient(httpClient),
	}
	if mode := s3LogMode(cfg.LogLevel); mode != 0 {
		loadOpts = append(loadOpts, awsconfig.WithClientLogMode(mode), awsconfig.WithLogger(slogSDKLogger{sdkLogger(ctx)}))
	}
	if cfg.UseDualStack {
		loadOpts = append(loadOpts, awsconfig.WithUseDualStackEndpoint(aws.DualStackEndpointStateEnabled))
	}
	if cfg.UseFIPSEndpoint {
		loadOpts = append(loadOpts, awsconfig.WithUseFIPSEndpoint(aws.FIPSEndpointStateEnabled))
	}
	if cfg.AccessKey != "" {
		loadOpts = append(loadOpts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3: load AWS configuration: %w: %w", driver.ErrMisconfigured, err)
	}
	return awss3.NewFromConfig(awsCfg, func(so *awss3.Options) {
		if endpoint != "" {
			so.BaseEndpoint = aws.String(endpoint)
		}
		so.UsePathStyle = cfg.ForcePathStyle
		so.UseAccelerate = cfg.Accelerate
		if cfg.UserAgent != "" {
			so.APIOptions = append(so.APIOptions, awsmiddleware.AddUserAgentKey(cfg.UserAgent))
		}
	}), nil
}

// s3EndpointURL returns cfg.RegionEndpoint as an absolute URL ("" when unset): a bare
// host gets https, or http when Secure is false.
func s3EndpointURL(cfg config.S3) (string, error) {
	ep := cfg.RegionEndpoint
	if ep == "" {
		return "", nil
	}
	if !strings.Contains(ep, "://") {
		scheme := "https://"
		if cfg.Secure != nil && !*cfg.Secure {
			scheme = "http://"
		}
		ep = scheme + ep
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("config storage.s3.regionendpoint: not an http(s) URL: %q: %w", cfg.RegionEndpoint, driver.ErrMisconfigured)
	}
	return ep, nil
}

// s3LogMode is the SDK log mode of storage.s3.loglevel (Distribution's names for the
// aws-sdk-go v1 levels, mapped onto the v2 SDK's bits); 0 logs nothing.
func s3LogMode(level string) aws.ClientLogMode {
	base := aws.LogRequest | aws.LogResponse
	switch strings.ToLower(level) {
	case "debug":
		return base
	case "debugwithsigning":
		return base | aws.LogSigning
	case "debugwithhttpbody":
		return aws.LogRequestWithBody | aws.LogResponseWithBody
	case "debugwithrequestretries", "debugwithrequesterrors":
		return base | aws.LogRetries
	case "debugwitheventstreambody":
		return base | aws.LogRequestEventMessage | aws.LogResponseEventMessage
	}
	return 0
}

// slogSDKLogger writes the AWS SDK's log at debug level ("warn" classified lines at warn).
type slogSDKLogger struct{ log *slog.Logger }

// Logf implements smithy-go's logging.Logger.
func (l slogSDKLogger) Logf(c logging.Classification, format string, v ...any) {
	level := slog.LevelDebug
	if c == logging.Warn {
		level = slog.LevelWarn
	}
	l.log.Log(context.Background(), level, "s3 sdk: "+fmt.Sprintf(format, v...), "backend", "s3")
}
