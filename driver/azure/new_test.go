package azure

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/registryd/registryd/driver"
)

func TestNew(t *testing.T) {
	const key = "a2V5" // any base64
	ok := testConfig{AccountName: "acct", AccountKey: key, Container: "c", ServiceURL: "https://acct.blob.core.windows.net/"}
	d, err := newTestDriver(ok, driver.DefaultRetryPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if d.chunk != 16<<20 || d.concurrency != 4 || d.budgetSize != 128<<20 || d.sasProtocol != sas.ProtocolHTTPS ||
		d.sharedKey == nil || d.container.URL() != "https://acct.blob.core.windows.net/c" {
		t.Errorf("defaults: chunk %d, concurrency %d, budget %d, protocol %s, url %s", d.chunk, d.concurrency, d.budgetSize, d.sasProtocol, d.container.URL())
	}
	plain := ok
	plain.ServiceURL = "http://127.0.0.1:1/acct"
	if d, err := newTestDriver(plain, driver.DefaultRetryPolicy()); err != nil || d.sasProtocol != sas.ProtocolHTTPSandHTTP ||
		d.container.URL() != "http://127.0.0.1:1/acct/c" {
		t.Errorf("plain http service URL: %v", err)
	}
	big := ok
	big.ChunkSize, big.MemoryBudget = 64<<20, 32<<20
	if d, err := newTestDriver(big, driver.DefaultRetryPolicy()); err != nil || d.budgetSize != 64<<20 {
		t.Errorf("a budget below one block is raised to it: %v", err)
	}
	for name, mod := range map[string]func(*testConfig){
		"no container":     func(c *testConfig) { c.Container = "" },
		"negative chunk":   func(c *testConfig) { c.ChunkSize = -1 },
		"huge chunk":       func(c *testConfig) { c.ChunkSize = 5000 << 20 },
		"negative workers": func(c *testConfig) { c.Concurrency = -1 },
		"bad root":         func(c *testConfig) { c.RootDirectory = "a/../b" },
	} {
		cfg := ok
		mod(&cfg)
		if _, err := newTestDriver(cfg, driver.DefaultRetryPolicy()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(nil, "c", Options{}); err == nil {
		t.Error("nil client: accepted")
	}
}
