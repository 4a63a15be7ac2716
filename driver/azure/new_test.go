package azure

import (
	"context"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/registryd/registryd/config"
)

func TestNew(t *testing.T) {
	const key = "a2V5" // any base64
	ok := config.Azure{AccountName: "acct", AccountKey: key, Container: "c"}
	d, err := New(context.Background(), ok)
	if err != nil {
		t.Fatal(err)
	}
	if d.chunk != 16<<20 || d.concurrency != 4 || d.sasProtocol != sas.ProtocolHTTPS ||
		d.container.URL() != "https://acct.blob.core.windows.net/c" {
		t.Errorf("defaults: chunk %d, concurrency %d, protocol %s, url %s", d.chunk, d.concurrency, d.sasProtocol, d.container.URL())
	}
	// Without a key the default credential chain is used; building it makes no call.
	noKey := ok
	noKey.AccountKey = ""
	if d, err := New(context.Background(), noKey); err != nil || d.sharedKey != nil {
		t.Errorf("default credential: %v", err)
	}
	endpoint := ok
	endpoint.Endpoint = "http://127.0.0.1:1/acct"
	if d, err := New(context.Background(), endpoint); err != nil || d.sasProtocol != sas.ProtocolHTTPSandHTTP ||
		d.container.URL() != "http://127.0.0.1:1/acct/c" {
		t.Errorf("endpoint alias: %v", err)
	}
	for name, mod := range map[string]func(*config.Azure){
		"no account":       func(c *config.Azure) { c.AccountName = "" },
		"no container":     func(c *config.Azure) { c.Container = "" },
		"negative chunk":   func(c *config.Azure) { c.ChunkSize = -1 },
		"huge chunk":       func(c *config.Azure) { c.ChunkSize = 5000 << 20 },
		"negative workers": func(c *config.Azure) { c.MaxConcurrency = -1 },
		"bad url":          func(c *config.Azure) { c.ServiceURL = "ftp://x" },
		"no host":          func(c *config.Azure) { c.ServiceURL = "https:///acct" },
		"aliases differ":   func(c *config.Azure) { c.ServiceURL, c.Endpoint = "https://a/", "https://b/" },
		"bad root":         func(c *config.Azure) { c.RootDirectory = "a/../b" },
		"bad key":          func(c *config.Azure) { c.AccountKey = "not base64!" },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
