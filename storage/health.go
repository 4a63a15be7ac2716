package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/registryd/registryd/driver"
)

// PingWrite checks that the backend accepts writes as well as reads: it puts a small
// object under docker/registry/v2/_health/ (a fresh random name each time, outside the
// trees that catalog and garbage collection walk), and deletes it.
// A failure of any step is returned; a failed delete after a successful write is too,
// since a registry that cannot delete cannot finish uploads either.
func (r *Registry) PingWrite(ctx context.Context) error {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	p := healthProbePath(hex.EncodeToString(b))
	body := []byte("registryd readiness probe\n")
	if err := r.d.Put(ctx, p, bytes.NewReader(body), int64(len(body))); err != nil {
		return fmt.Errorf("readiness: write probe: %w", err)
	}
	if err := r.d.Delete(ctx, p); err != nil && !errors.Is(err, driver.ErrNotFound) {
		return fmt.Errorf("readiness: delete probe: %w", err)
	}
	return nil
}
