package storage

import (
	"context"
	"fmt"

	"github.com/registryd/registryd/driver"
)

// pending is the outcome of a backend call running in its own goroutine, started early so
// that it overlaps another call (a lookup made for latency). Wait returns the outcome.
type pending[T any] struct {
	done chan struct{}
	v    T
	err  error
}

// inBackground runs f in a goroutine and returns its pending outcome. A panic in f (a
// driver's bug, outside the handler's recovery) becomes its error, naming what.
func inBackground[T any](what string, f func() (T, error)) *pending[T] {
	p := &pending[T]{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer func() {
			if v := recover(); v != nil {
				p.err = fmt.Errorf("%s panicked: %v", what, v)
			}
		}()
		p.v, p.err = f()
	}()
	return p
}

// Wait returns the call's outcome once it is there. It may be called any number of times,
// from any goroutine.
func (p *pending[T]) Wait() (T, error) {
	<-p.done
	return p.v, p.err
}

// statInBackground starts a Stat of path.
func (r *Registry) statInBackground(ctx context.Context, path string) *pending[driver.Info] {
	return inBackground("stat "+path, func() (driver.Info, error) { return r.d.Stat(ctx, path) })
}
