package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestTLSAndHost(t *testing.T) {
	yml := `
http:
  host: https://registry.example.com/
  tls:
    certificate: /etc/tls/tls.crt
    key: /etc/tls/tls.key
    clientcas: [/etc/tls/ca1.pem]
    minimumtls: tls1.3
    ciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
  http2: {disabled: true}
`
	c, err := Load(strings.NewReader(yml), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{Certificate: "/etc/tls/tls.crt", Key: "/etc/tls/tls.key", ClientCAs: []string{"/etc/tls/ca1.pem"}, MinimumTLS: "tls1.3",
		CipherSuites: []string{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}
	if !reflect.DeepEqual(c.HTTP.TLS, want) || !c.HTTP.TLS.Enabled() {
		t.Errorf("tls: %+v, want %+v", c.HTTP.TLS, want)
	}
	if u := c.HTTP.HostURL(); u == nil || u.String() != "https://registry.example.com" {
		t.Errorf("HostURL() = %v, want https://registry.example.com", u)
	}
	if !c.HTTP.AbsoluteURLs() {
		t.Error("AbsoluteURLs() = false with http.host set and http.relativeurls unset")
	}
	if ids := c.HTTP.TLS.CipherSuiteIDs(); !reflect.DeepEqual(ids, []uint16{0xc02c, 0xc02f}) {
		t.Errorf("CipherSuiteIDs() = %#x", ids)
	}
	if !c.HTTP.HTTP2.Disabled {
		t.Error("http.http2.disabled not read")
	}
}

func TestTLSEnv(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want []string
	}{
		{"/a.pem,/b.pem", []string{"/a.pem", "/b.pem"}},
		{" /a.pem , ", []string{"/a.pem"}},
		{"[/a.pem, /b.pem]", []string{"/a.pem", "/b.pem"}},
	} {
		c, err := Load(nil, []string{
			"REGISTRY_HTTP_TLS_CERTIFICATE=/c.pem", "REGISTRY_HTTP_TLS_KEY=/k.pem",
			"REGISTRY_HTTP_TLS_CLIENTCAS=" + tc.val, "REGISTRY_HTTP_RELATIVEURLS=true",
			"REGISTRY_HTTP_HOST=http://10.0.0.1:5000",
		})
		if err != nil {
			t.Fatalf("%q: %v", tc.val, err)
		}
		if !reflect.DeepEqual(c.HTTP.TLS.ClientCAs, tc.want) {
			t.Errorf("REGISTRY_HTTP_TLS_CLIENTCAS=%q: %q, want %q", tc.val, c.HTTP.TLS.ClientCAs, tc.want)
		}
		if c.HTTP.AbsoluteURLs() {
			t.Errorf("AbsoluteURLs() = true with http.relativeurls true")
		}
	}
}

func TestAbsoluteURLs(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		host     string
		relative *bool
		want     bool
	}{
		{"", nil, false},
		{"https://r.example.com", nil, true},
		{"", &no, true},
		{"https://r.example.com", &no, true},
		{"", &yes, false},
		{"https://r.example.com", &yes, false},
	} {
		h := HTTP{Host: tc.host, RelativeURLs: tc.relative}
		if got := h.AbsoluteURLs(); got != tc.want {
			t.Errorf("host %q relativeurls %v: AbsoluteURLs() = %v, want %v", tc.host, tc.relative, got, tc.want)
		}
	}
}

func TestTLSInvalid(t *testing.T) {
	for _, tc := range []struct {
		yml  string
		want string
	}{
		{"http: {tls: {certificate: c.pem}}\n", "http.tls.key"},
		{"http: {tls: {key: k.pem}}\n", "http.tls.certificate"},
		{"http: {tls: {clientcas: [ca.pem]}}\n", "http.tls.clientcas"},
		{"http: {tls: {minimumtls: tls1.3}}\n", "http.tls.minimumtls"},
		{"http: {tls: {certificate: c.pem, key: k.pem, minimumtls: tls1.1}}\n", "http.tls.minimumtls"},
		{"http: {tls: {certificate: c.pem, key: k.pem, minimumtls: TLS13}}\n", "http.tls.minimumtls"},
		{"http: {tls: {certificate: c.pem, key: k.pem, clientcas: [\"\"]}}\n", "http.tls.clientcas[0]"},
		{"http: {tls: {ciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]}}\n", "http.tls.ciphersuites"},
		{"http: {tls: {certificate: c.pem, key: k.pem, ciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_RC4_128_SHA]}}\n", "http.tls.ciphersuites[1]"},
		{"http: {tls: {certificate: c.pem, key: k.pem, ciphersuites: [ECDHE-RSA-AES128-GCM-SHA256]}}\n", "http.tls.ciphersuites[0]"},
		{"http: {tls: {certificate: c.pem, key: k.pem, ciphersuites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]}}\n", "http.tls.ciphersuites: HTTP/2"},
		{"http: {host: registry.example.com}\n", "http.host"},
		{"http: {host: \"ftp://registry.example.com\"}\n", "http.host"},
		{"http: {host: \"https://registry.example.com/v2\"}\n", "http.host"},
		{"http: {host: \"https://user@registry.example.com\"}\n", "http.host"},
		{"http: {host: \"https://:443\"}\n", "http.host"},
	} {
		_, err := Load(strings.NewReader(tc.yml), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want an error naming %q", tc.yml, err, tc.want)
		}
	}
}
