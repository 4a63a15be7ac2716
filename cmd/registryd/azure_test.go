package main

import (
	"testing"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver"
)

// TestAzureClient checks the service URL and credentials openAzure builds the client
// from, without any request.
func TestAzureClient(t *testing.T) {
	const key = "a2V5" // any base64
	ok := config.Azure{AccountName: "acct", AccountKey: key, Container: "c"}
	for _, c := range []struct {
		name string
		mod  func(*config.Azure)
		url  string // the service URL, "" when openAzure must fail
	}{
		{"default", func(*config.Azure) {}, "https://acct.blob.core.windows.net/"},
		{"serviceurl", func(c *config.Azure) { c.ServiceURL = "http://127.0.0.1:1/acct" }, "http://127.0.0.1:1/acct"},
		{"endpoint alias", func(c *config.Azure) { c.Endpoint = "http://127.0.0.1:1/acct" }, "http://127.0.0.1:1/acct"},
		{"same aliases", func(c *config.Azure) { c.ServiceURL, c.Endpoint = "https://a/", "https://a" }, "https://a/"},
		{"default credential chain", func(c *config.Azure) { c.AccountKey = "" }, "https://acct.blob.core.windows.net/"},
		{"realm", func(c *config.Azure) { c.Realm = "core.chinacloudapi.cn" }, "https://acct.blob.core.chinacloudapi.cn/"},
		{"skipverify", func(c *config.Azure) { c.SkipVerify = true }, "https://acct.blob.core.windows.net/"},
		{"credentials shared_key", func(c *config.Azure) { c.Credentials = &config.AzureCredentials{Type: "shared_key"} }, "https://acct.blob.core.windows.net/"},
		{"credentials shared_key without key", func(c *config.Azure) {
			c.AccountKey, c.Credentials = "", &config.AzureCredentials{Type: "shared_key"}
		}, ""},
		{"credentials client_secret", func(c *config.Azure) {
			c.Credentials = &config.AzureCredentials{Type: "client_secret", TenantID: "00000000-0000-0000-0000-000000000001", ClientID: "app", Secret: "s"}
		}, "https://acct.blob.core.windows.net/"},
		{"credentials client_secret, bad tenant", func(c *config.Azure) {
			c.Credentials = &config.AzureCredentials{Type: "client_secret", TenantID: "not a tenant!", ClientID: "app", Secret: "s"}
		}, ""},
		{"credentials default_credentials", func(c *config.Azure) { c.Credentials = &config.AzureCredentials{Type: "default_credentials"} }, "https://acct.blob.core.windows.net/"},
		{"credentials unknown", func(c *config.Azure) { c.Credentials = &config.AzureCredentials{Type: "sas"} }, ""},
		{"no account", func(c *config.Azure) { c.AccountName = "" }, ""},
		{"bad url", func(c *config.Azure) { c.ServiceURL = "ftp://x" }, ""},
		{"no host", func(c *config.Azure) { c.ServiceURL = "https:///acct" }, ""},
		{"query", func(c *config.Azure) { c.ServiceURL = "https://a/?x=1" }, ""},
		{"aliases differ", func(c *config.Azure) { c.ServiceURL, c.Endpoint = "https://a/", "https://b/" }, ""},
		{"bad key", func(c *config.Azure) { c.AccountKey = "not base64!" }, ""},
		{"no container", func(c *config.Azure) { c.Container = "" }, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.mod(&cfg)
			_, err := openAzure(cfg, driver.DefaultRetryPolicy())
			if c.url == "" {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u, err := azureServiceURL(cfg)
			if err != nil || u != c.url {
				t.Errorf("service URL %q, %v; want %q", u, err, c.url)
			}
		})
	}
}
