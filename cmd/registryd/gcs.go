package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/gcs"
)

// openGCS builds the GCS client of storage.gcs and the driver on it; the driver owns the
// client (its Close closes it).
//
// Credentials come from cfg.Credentials (the JSON inline) or cfg.KeyFile (a JSON file);
// without either, Application Default Credentials are used (GOOGLE_APPLICATION_CREDENTIALS,
// GKE workload identity, the metadata server), except that a plain-http endpoint (an
// emulator) is used without authentication. A service account key, configured or named by
// GOOGLE_APPLICATION_CREDENTIALS, also signs URLs. The endpoint is cfg.Endpoint or else the
// STORAGE_EMULATOR_HOST environment variable ("host:port" or a URL); a URL without a path
// gets "/storage/v1/". It makes no request.
func openGCS(ctx context.Context, cfg config.GCS, rp driver.RetryPolicy) (*gcs.Driver, error) {
	opts := gcs.Options{
		RootDirectory: cfg.RootDirectory,
		ChunkSize:     cfg.ChunkSize,
		Concurrency:   cfg.MaxConcurrency,
		Retry:         rp,
	}
	var copts []option.ClientOption
	endpoint, err := gcsEndpointURL(cfg.Endpoint, os.Getenv("STORAGE_EMULATOR_HOST"))
	if err != nil {
		return nil, err
	}
	if endpoint != nil {
		copts = append(copts, option.WithEndpoint(endpoint.String()))
		opts.InsecureURLs = endpoint.Scheme == "http"
	}
	creds, err := gcsCredentialsJSON(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case creds != nil:
		var head struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(creds, &head); err != nil || head.Type == "" {
			return nil, errors.New("gcs: credentials: not a Google credentials JSON document")
		}
		copts = append(copts, option.WithAuthCredentialsJSON(option.CredentialsType(head.Type), creds))
		opts.SignerEmail, opts.SignerKey = gcsSigner(creds)
	case opts.InsecureURLs:
		copts = append(copts, option.WithoutAuthentication())
	default:
		// Application Default Credentials; a service account key file named by
		// GOOGLE_APPLICATION_CREDENTIALS can also sign URLs.
		if f := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS"); f != "" {
			if b, err := os.ReadFile(f); err == nil {
				opts.SignerEmail, opts.SignerKey = gcsSigner(b)
			}
		}
	}
	if cfg.UserAgent != "" {
		copts = append(copts, option.WithUserAgent(cfg.UserAgent))
	}
	client, err := storage.NewClient(ctx, copts...)
	if err != nil {
		return nil, fmt.Errorf("gcs: client: %w", err)
	}
	d, err := gcs.New(client, cfg.Bucket, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return d, nil
}

// gcsEndpointURL returns the JSON API endpoint from the configured endpoint or else the
// emulator host, or nil for the default endpoint.
func gcsEndpointURL(configured, emulatorHost string) (*url.URL, error) {
	raw := configured
	if raw == "" {
		raw = emulatorHost
		if raw != "" && !strings.Contains(raw, "://") {
			raw = "http://" + raw
		}
	}
	if raw == "" {
		return nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return nil, fmt.Errorf("gcs: endpoint: want an http(s) URL without query, got %q", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/storage/v1/"
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u, nil
}

// gcsCredentialsJSON returns the configured credentials document, or nil for Application
// Default Credentials.
func gcsCredentialsJSON(cfg config.GCS) ([]byte, error) {
	switch {
	case cfg.Credentials != "" && cfg.KeyFile != "":
		return nil, errors.New("gcs: credentials and keyfile: set at most one")
	case cfg.Credentials != "":
		return []byte(cfg.Credentials), nil
	case cfg.KeyFile != "":
		b, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("gcs: keyfile: %w", err)
		}
		return b, nil
	}
	return nil, nil
}

// gcsSigner returns the account and private key of a service account key document, or
// zero values when it is none.
func gcsSigner(b []byte) (email string, key []byte) {
	var sa struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
	}
	if json.Unmarshal(b, &sa) != nil || sa.Type != "service_account" || sa.ClientEmail == "" || sa.PrivateKey == "" {
		return "", nil
	}
	return sa.ClientEmail, []byte(sa.PrivateKey)
}
