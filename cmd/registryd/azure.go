package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/azure"
)

// openAzure builds the Azure service client of storage.azure and the driver on it. With
// cfg.AccountKey the requests are signed with the shared key; without it the default
// Azure credential chain is used (environment, workload identity, managed identity, Azure
// CLI). The service URL is cfg.ServiceURL (or its alias cfg.Endpoint), by default
// https://<accountname>.blob.core.windows.net/. It makes no network call.
func openAzure(cfg config.Azure, rp driver.RetryPolicy) (*azure.Driver, error) {
	serviceURL, err := azureServiceURL(cfg)
	if err != nil {
		return nil, err
	}
	opts := azure.Options{
		RootDirectory: cfg.RootDirectory,
		ChunkSize:     cfg.ChunkSize,
		Concurrency:   cfg.MaxConcurrency,
	}
	var client *service.Client
	if cfg.AccountKey != "" {
		cred, err := service.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
		if err != nil {
			return nil, fmt.Errorf("azure: accountkey: %w", err)
		}
		opts.SharedKey = cred
		if client, err = service.NewClientWithSharedKeyCredential(serviceURL, cred, azure.ClientOptions(rp)); err != nil {
			return nil, fmt.Errorf("azure: %w", err)
		}
	} else {
		cred, err := azidentity.NewDefaultAzureCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("azure: default credential chain: %w", err)
		}
		if client, err = service.NewClient(serviceURL, cred, azure.ClientOptions(rp)); err != nil {
			return nil, fmt.Errorf("azure: %w", err)
		}
	}
	return azure.New(client, cfg.Container, opts)
}

// azureServiceURL returns the service URL of cfg: storage.azure.serviceurl or its alias
// storage.azure.endpoint, by default the account's public endpoint.
func azureServiceURL(cfg config.Azure) (string, error) {
	if cfg.AccountName == "" {
		return "", errors.New("azure: accountname is required")
	}
	serviceURL := cfg.ServiceURL
	if serviceURL == "" {
		serviceURL = cfg.Endpoint
	} else if cfg.Endpoint != "" && strings.TrimSuffix(cfg.Endpoint, "/") != strings.TrimSuffix(serviceURL, "/") {
		return "", errors.New("azure: serviceurl and endpoint are aliases and differ: set one")
	}
	if serviceURL == "" {
		serviceURL = "https://" + cfg.AccountName + ".blob.core.windows.net/"
	}
	u, err := url.Parse(serviceURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return "", fmt.Errorf("azure: serviceurl: want an http(s) URL without query, got %q", serviceURL)
	}
	return serviceURL, nil
}
