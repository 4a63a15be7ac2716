package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/driver/inmemory"
)

// openDriver builds the configured storage driver (config.Validate guarantees exactly one
// and checks its keys). This is the one place that knows both config and the drivers: it
// builds each backend's SDK client from its config section (s3.go, gcs.go, azure.go) and
// hands the driver the client and its driver-owned Options.
func openDriver(ctx context.Context, cfg *config.Config) (driver.Driver, error) {
	s := cfg.Storage
	// The drivers retry with storage.retry only what the driver.WithRetry wrapped around
	// them does not (Writer requests); see driver.RetriedByCaller.
	rp := retryPolicy(s.Retry)
	switch {
	case s.Filesystem != nil:
		return filesystem.New(s.Filesystem.RootDirectory)
	case s.InMemory != nil:
		return inmemory.New(), nil
	case s.S3 != nil:
		return openS3(ctx, *s.S3, rp)
	case s.GCS != nil:
		return openGCS(ctx, *s.GCS, rp)
	case s.Azure != nil:
		return openAzure(*s.Azure, rp)
	}
	return nil, errors.New("config: storage: no supported backend configured")
}

// sdkLoggerKey is the context key of withSDKLogger.
type sdkLoggerKey struct{}

// withSDKLogger returns ctx carrying log for the logs the backend SDKs write while
// openDriver builds their clients with it (storage.s3.loglevel).
func withSDKLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, sdkLoggerKey{}, log)
}

// sdkLogger returns the logger of withSDKLogger, or one discarding everything.
func sdkLogger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(sdkLoggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// retryPolicy is storage.retry as a driver.RetryPolicy: the one policy of driver.WithRetry
// and of the drivers' own retries.
func retryPolicy(r config.Retry) driver.RetryPolicy {
	return driver.RetryPolicy{MaxAttempts: r.MaxAttempts, BaseDelay: r.BaseDelay, MaxDelay: r.MaxDelay}
}

// openStorage is the driver serve uses for cfg: the backend, request logging at the debug
// level, and driver.WithRetry with storage.retry.
func openStorage(ctx context.Context, cfg *config.Config, log *slog.Logger) (driver.Driver, error) {
	d, err := openDriver(withSDKLogger(ctx, log), cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Log.Level == "debug" {
		d = driver.WithLogging(d, log)
	}
	return driver.WithRetry(d, retryPolicy(cfg.Storage.Retry)), nil
}
