package storage

import (
	"context"
	"errors"
	"testing"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/fault"
	"github.com/registryd/registryd/driver/inmemory"
)

// TestPingWrite: the write probe leaves nothing behind, and fails when the backend
// refuses writes while Ping (reads) still passes.
func TestPingWrite(t *testing.T) {
	ctx := context.Background()
	f := fault.New(inmemory.New())
	r := newTestRegistry(t, f)
	if err := r.PingWrite(ctx); err != nil {
		t.Fatal(err)
	}
	if l, err := f.List(ctx, rootPrefix+"/_health", "", 0); err != nil || len(l) != 0 {
		t.Errorf("left behind under _health: %v %v", l, err)
	}
	f.Fail(driver.ErrPermission, fault.Put)
	if err := r.PingWrite(ctx); !errors.Is(err, driver.ErrPermission) {
		t.Errorf("PingWrite on a backend refusing writes: %v", err)
	}
	if err := r.Ping(ctx); err != nil {
		t.Errorf("Ping on a backend refusing only writes: %v", err)
	}
}
