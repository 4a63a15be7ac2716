package driver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/inmemory"
)

// TestWithLogging: each backend call is one debug line with its operation, path and
// latency; errors pass through unchanged; writers keep CommitterTo.
func TestWithLogging(t *testing.T) {
	ctx := context.Background()
	var buf bytes.Buffer
	d := driver.WithLogging(inmemory.New(), slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err := d.Put(ctx, "a/b", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, "a/missing"); !errors.Is(err, driver.ErrNotFound) {
		t.Fatalf("Stat of a missing object: %v", err)
	}
	w, err := d.Writer(ctx, "a/w", nil)
	if err != nil {
		t.Fatal(err)
	}
	inner, _ := inmemory.New().Writer(ctx, "x", nil)
	_, innerHas := inner.(driver.CommitterTo)
	if _, has := w.(driver.CommitterTo); has != innerHas {
		t.Errorf("CommitterTo: wrapped %v, inner %v", has, innerHas)
	}
	if _, err := w.Write([]byte("data")); err != nil {
		t.Fatal(err)
	}
	if _, err := driver.CommitTo(ctx, d, w, "a/w", "a/c"); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["level"] != "DEBUG" || rec["msg"] != "backend call" || rec["driver"] != "inmemory" || rec["latency"] == nil {
			t.Errorf("line %v", rec)
		}
		ops = append(ops, rec["op"].(string)+" "+rec["path"].(string))
		if rec["op"] == "stat" && !strings.Contains(rec["error"].(string), "not found") {
			t.Errorf("stat line without its error: %v", rec)
		}
	}
	want := "put a/b|stat a/missing|writer a/w|writer commit a/c"
	if strings.Join(ops, "|") != want {
		t.Errorf("ops %q, want %q", strings.Join(ops, "|"), want)
	}
}
