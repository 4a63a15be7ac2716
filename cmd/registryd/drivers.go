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
	switch {
	case s.Filesystem != nil:
		return filesystem.New(*s.Filesystem)
	case s.InMemory != nil:
		return inmemory.New(), nil
	case s.S3 != nil:
		return s3.New(ctx, *s.S3)
	case s.GCS != nil:
		return gcs.New(ctx, *s.GCS)
	case s.Azure != nil:
		return azure.New(ctx, *s.Azure)
	}
	return nil, errors.New("config: storage: no supported backend configured")
}
