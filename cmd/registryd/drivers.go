package main

import (
	"context"
	"errors"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/azure"
	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/driver/gcs"
	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/driver/s3"
)

// openDriver builds the configured storage driver (config.Validate guarantees exactly one).
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
		return s3.New(ctx, *s.S3, s3.WithRetryPolicy(rp))
	case s.GCS != nil:
		return gcs.New(ctx, *s.GCS, gcs.WithRetryPolicy(rp))
	case s.Azure != nil:
		return azure.New(ctx, *s.Azure, azure.WithRetryPolicy(rp))
	}
	return nil, errors.New("config: storage: no supported backend configured")
}

// retryPolicy is storage.retry as a driver.RetryPolicy: the one policy of driver.WithRetry
// and of the drivers' own retries.
func retryPolicy(r config.Retry) driver.RetryPolicy {
	return driver.RetryPolicy{MaxAttempts: r.MaxAttempts, BaseDelay: r.BaseDelay, MaxDelay: r.MaxDelay}
}
