package main

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/azure"
)

// openAzure builds the Azure service client of storage.azure and the driver on it. The
// credential is the one of storage.azure.credentials.type (CNCF Distribution v3's
// setting, see config.Azure.EffectiveType): shared_key signs with accountname and
// accountkey; client_secret gets tokens for a Microsoft Entra application (tenantid,
// clientid, secret); default_credentials uses the Azure SDK's default chain (environment,
// workload identity, managed identity, Azure CLI). Without a credentials section an
// account key means shared_key, and no key default_credentials. The service URL is
// cfg.ServiceURL (or its alias cfg.Endpoint), else https://<accountname>.blob.<realm>/
// (realm core.windows.net by default). It makes no network call.
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
	copts := azure.ClientOptions(rp)
	if cfg.SkipVerify {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // explicitly configured
		copts.Transport = &http.Client{Transport: tr}
	}
	var client *service.Client
	switch typ := cfg.EffectiveType(); typ {
	case config.AzureSharedKey:
		if cfg.AccountKey == "" {
			return nil, errors.New("azure: credentials type shared_key needs accountkey")
		}
		cred, err := service.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
		if err != nil {
			return nil, fmt.Errorf("azure: accountkey: %w", err)
		}
		opts.SharedKey = cred
		if client, err = service.NewClientWithSharedKeyCredential(serviceURL, cred, copts); err != nil {
			return nil, fmt.Errorf("azure: %w", err)
		}
	case config.AzureClientSecret, config.AzureDefaultCredentials:
		var cred azcore.TokenCredential
		if typ == config.AzureClientSecret {
			cr := cfg.Credentials
			cred, err = azidentity.NewClientSecretCredential(cr.TenantID, cr.ClientID, cr.Secret, nil)
			if err != nil {
				return nil, fmt.Errorf("azure: client_secret credentials: %w", err)
			}
		} else if cred, err = azidentity.NewDefaultAzureCredential(nil); err != nil {
			return nil, fmt.Errorf("azure: default credential chain: %w", err)
		}
		if client, err = service.NewClient(serviceURL, cred, copts); err != nil {
			return nil, fmt.Errorf("azure: %w", err)
		}
	default:
		return nil, fmt.Errorf("azure: credentials type %q: want shared_key, client_secret or default_credentials", typ)
	}
	return azure.New(client, cfg.Container, opts)
}

// azureServiceURL returns the service URL of cfg: storage.azure.serviceurl or its alias
// storage.azure.endpoint, by default the account's public endpoint in storage.azure.realm.
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
		serviceURL = "https://" + cfg.AccountName + ".blob." + cmp.Or(cfg.Realm, "core.windows.net") + "/"
	}
	u, err := url.Parse(serviceURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		return "", fmt.Errorf("azure: serviceurl: want an http(s) URL without query, got %q", serviceURL)
	}
	return serviceURL, nil
}
