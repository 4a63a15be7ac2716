package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver/inmemory"
)

// TestStartupSettings: the start-up lines give the effective settings and list what does
// not take effect as written and the ignored Distribution keys.
func TestStartupSettings(t *testing.T) {
	cfg, err := config.Load(strings.NewReader(`
storage:
  inmemory: {}
  redirect: {enable: true}
  maintenance: {readonly: {enabled: true}}
  cache: {blobdescriptor: inmemory}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := inmemory.New()
	s := effectiveSettings(context.Background(), cfg, d)
	if s.redirect {
		t.Error("redirects on for a driver that cannot sign")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var buf bytes.Buffer
	s.log(newLogger(cfg.Log, &buf), cfg, d, []net.Listener{l})
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	if len(recs) != 3 {
		t.Fatalf("%d lines:\n%s", len(recs), buf.String())
	}
	start := recs[0]
	if start["msg"] != "registryd started" || start["storage"] != "inmemory" || start["readonly"] != true ||
		start["redirect"] != "off" || start["uploadpurging"] != "off" || start["listen"] != l.Addr().String() {
		t.Errorf("start-up line: %v", start)
	}
	if keys := recs[1]["keys"]; !strings.Contains(jsonString(keys), "storage.cache") {
		t.Errorf("ignored keys line: %v", recs[1])
	}
	got := jsonString(recs[2]["settings"])
	for _, want := range []string{"storage.redirect.enable: off, the inmemory driver cannot sign URLs",
		"storage.maintenance.uploadpurging: off in read-only mode", "http.secret: not set"} {
		if !strings.Contains(got, want) {
			t.Errorf("downgraded settings %s lack %q", got, want)
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
