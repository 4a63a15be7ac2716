package handlers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
)

// TestReadiness: the backend check runs at most once per interval whatever the probe
// rate (concurrent probes share one), its result is cached, and Drain fails readiness at
// once.
func TestReadiness(t *testing.T) {
	var calls atomic.Int32
	var fail atomic.Bool
	check := func(ctx context.Context) error {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		if fail.Load() {
			return errors.New("backend refuses writes")
		}
		return nil
	}
	r := NewReadiness(check, 300*time.Millisecond, nil)
	e := echo.New()
	e.GET("/readyz", r.handler())
	get := func() int {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s := get(); s != 200 {
				t.Errorf("status %d", s)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("%d backend checks for 20 concurrent probes, want 1", n)
	}
	fail.Store(true)
	if s := get(); s != 200 {
		t.Errorf("cached result: %d, want 200 until the interval passes", s)
	}
	time.Sleep(350 * time.Millisecond)
	if s := get(); s != 503 {
		t.Errorf("after the interval, failing backend: %d, want 503", s)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d backend checks, want 2", n)
	}
	fail.Store(false)
	time.Sleep(350 * time.Millisecond)
	if s := get(); s != 200 {
		t.Errorf("recovered backend: %d", s)
	}
	r.Drain()
	if s := get(); s != 503 {
		t.Errorf("draining: %d, want 503", s)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d backend checks, want 3 (draining needs none)", n)
	}
}

// TestReadinessDrainWhileWaiting: a probe that waited for another probe's backend check
// answers "draining" once Drain has begun, never the cached success.
func TestReadinessDrainWhileWaiting(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	r := NewReadiness(func(ctx context.Context) error {
		once.Do(func() { close(started) })
		<-release
		return nil
	}, time.Hour, nil)
	first := make(chan error, 1)
	go func() { first <- r.Check(context.Background()) }()
	<-started // the first probe holds the lock in its backend check
	second := make(chan error, 1)
	go func() { second <- r.Check(context.Background()) }()
	time.Sleep(20 * time.Millisecond) // the second probe waits for the lock
	r.Drain()
	close(release)
	for i, ch := range []chan error{first, second} {
		if err := <-ch; !errors.Is(err, errDraining) {
			t.Errorf("probe %d after Drain: %v, want errDraining", i+1, err)
		}
	}
}
