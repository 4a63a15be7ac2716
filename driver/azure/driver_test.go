package azure

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/registryd/registryd/driver"
	"github.com/registryd/registryd/driver/testsuite"
	"github.com/registryd/registryd/internal/testenv"
)

const testChunk = 5 << 20

// testConfig is where a test driver's client connects, its container and its options.
type testConfig struct {
	AccountName, AccountKey, ServiceURL, Container string
	Options
}

// newTestDriver returns a driver on cfg through a shared-key client retrying with rp.
func newTestDriver(cfg testConfig, rp driver.RetryPolicy) (*Driver, error) {
	cred, err := service.NewSharedKeyCredential(cfg.AccountName, cfg.AccountKey)
	if err != nil {
		return nil, err
	}
	client, err := service.NewClientWithSharedKeyCredential(cfg.ServiceURL, cred, ClientOptions(rp))
	if err != nil {
		return nil, err
	}
	opts := cfg.Options
	opts.SharedKey = cred
	return New(client, cfg.Container, opts)
}

// testDriver returns a driver on cfg with short retries and a memory budget (0: the
// default), failing the test on a bad config.
func testDriver(t *testing.T, cfg testConfig, budget int64) *Driver {
	t.Helper()
	cfg.MemoryBudget = budget
	d, err := newTestDriver(cfg, driver.RetryPolicy{MaxAttempts: 2, BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func azuriteConfig(az *testenv.Azurite, container string) testConfig {
	cfg := testConfig{AccountName: az.Account, AccountKey: az.Key, Container: container, ServiceURL: az.ServiceURL}
	cfg.ChunkSize = testChunk
	return cfg
}

func TestConformance(t *testing.T) {
	az := testenv.StartAzurite(t)
	cfg := azuriteConfig(az, az.NewContainer(t))
	d, err := newTestDriver(cfg, driver.DefaultRetryPolicy())
	if err != nil {
		t.Fatal(err)
	}
	testsuite.Run(t, testsuite.Harness{Driver: d, PartSize: testChunk})
}

// TestEmulator groups driver-specific cases against one Azurite.
func TestEmulator(t *testing.T) {
	az := testenv.StartAzurite(t)
	name := az.NewContainer(t)
	d := testDriver(t, azuriteConfig(az, name), 0)
	ctx := context.Background()

	t.Run("Misconfigured", func(t *testing.T) { testMisconfigured(t, az, d, azuriteConfig(az, name)) })

	t.Run("ResumeAfterCommitOrAbort", func(t *testing.T) {
		for _, end := range []string{"commit", "abort"} {
			p := "ended/" + end
			w, err := d.Writer(ctx, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(bytes.Repeat([]byte("z"), testChunk+5)); err != nil {
				t.Fatal(err)
			}
			st, err := w.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if w, err = d.Writer(ctx, p, st); err != nil {
				t.Fatal(err)
			}
			if end == "commit" {
				err = w.Commit(ctx)
			} else {
				err = w.Abort(ctx)
			}
			if err != nil {
				t.Fatalf("%s: %v", end, err)
			}
			if _, err := d.Writer(ctx, p, st); !errors.Is(err, driver.ErrNotFound) {
				t.Errorf("resume after %s: want ErrNotFound, got %v", end, err)
			}
		}
		if err := d.Delete(ctx, "ended"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ResumeNeverStarted", func(t *testing.T) {
		st := state{blocks: 1, size: 10}
		_, _ = rand.Read(st.session[:])
		if _, err := d.Writer(ctx, "never/started", st.encode()); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("want ErrNotFound, got %v", err)
		}
	})

	t.Run("WriterAfterEnd", func(t *testing.T) {
		w, err := d.Writer(ctx, "after/end", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Error("Write after Abort succeeded")
		}
		if _, err := w.State(ctx); err == nil {
			t.Error("State after Abort succeeded")
		}
		if err := w.Commit(ctx); err == nil {
			t.Error("Commit after Abort succeeded")
		}
	})

	t.Run("ListOrderAcrossPages", func(t *testing.T) {
		// Azure lists "c-0000".."c-0299", "c.f", then the prefix "c/"; the contract
		// wants directory "c" first. 300 entries span two service pages of 256.
		var names []string
		for i := range 300 {
			names = append(names, fmt.Sprintf("order/c-%04d", i))
		}
		names = append(names, "order/c.f", "order/c/x", "order/b", "order/d")
		putAll(t, d, names)
		got, err := d.List(ctx, "order", "", 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Path != "order/b" || got[1].Path != "order/c" || !got[1].IsDir {
			t.Errorf("first page: %+v", got)
		}
		got, err = d.List(ctx, "order", "order/c", 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Path != "order/c-0000" {
			t.Errorf("after c: %+v", got)
		}
		got, err = d.List(ctx, "order", "order/c-0299", 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 || got[0].Path != "order/c.f" || got[1].Path != "order/d" {
			t.Errorf("after c-0299: %+v", got)
		}
		if err := d.Delete(ctx, "order"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RootDirectory", func(t *testing.T) {
		cfg := azuriteConfig(az, name)
		cfg.RootDirectory = "/reg/root/"
		rd := testDriver(t, cfg, 0)
		if err := rd.Put(ctx, "a/obj", bytes.NewReader([]byte("x")), 1); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Stat(ctx, "reg/root/a/obj"); err != nil {
			t.Errorf("object not under the root directory: %v", err)
		}
		got, err := rd.List(ctx, "", "", 0)
		if err != nil || len(got) != 1 || got[0].Path != "a" || !got[0].IsDir {
			t.Errorf("root listing: %+v, %v", got, err)
		}
		if err := rd.Copy(ctx, "a/obj", "b/obj"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Stat(ctx, "reg/root/b/obj"); err != nil {
			t.Errorf("copy not under the root directory: %v", err)
		}
		if err := d.Delete(ctx, "reg"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("SmallMemoryBudget", func(t *testing.T) {
		// Two blocks of budget shared by four writers of three blocks each: they take
		// turns, and none deadlocks.
		small := testDriver(t, azuriteConfig(az, name), 2*testChunk)
		// Two abandoned writers fill the whole budget; ending their ctx gives it back.
		abandoned, cancel := context.WithCancel(ctx)
		for i := range 2 {
			w, err := small.Writer(abandoned, "budget/abandoned"+strconv.Itoa(i), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(bytes.Repeat([]byte("a"), testChunk-1)); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		data := bytes.Repeat([]byte("b"), 3*testChunk+1)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, err := small.Writer(ctx, "budget/"+strconv.Itoa(i), nil)
				if err == nil {
					_, err = io.Copy(w, bytes.NewReader(data))
					if err == nil {
						err = w.Commit(ctx)
					}
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}
		if err := d.Delete(ctx, "budget"); err != nil {
			t.Fatal(err)
		}
	})
}

func putAll(t *testing.T, d driver.Driver, names []string) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(names))
	for _, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- d.Put(context.Background(), n, bytes.NewReader([]byte(n)), int64(len(n)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// testMisconfigured checks that bad credentials, a missing container and an unreachable
// endpoint surface as ErrPermission, ErrMisconfigured and ErrUnavailable from every
// operation, and never as ErrNotFound.
func testMisconfigured(t *testing.T, az *testenv.Azurite, good *Driver, goodCfg testConfig) {
	ctx := context.Background()
	// A real object and a real resume state, so only the configuration is wrong.
	if err := good.Put(ctx, "mis/obj", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	w, err := good.Writer(ctx, "mis/upload", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	st, err := w.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = good.Delete(context.Background(), "mis") })

	wrongKey := make([]byte, 64)
	_, _ = rand.Read(wrongKey)
	closed := testenv.FreePort(t) // free a moment ago: nothing listens there

	cases := []struct {
		name string
		cfg  func(*testConfig)
		want error
	}{
		{"WrongKey", func(c *testConfig) { c.AccountKey = base64.StdEncoding.EncodeToString(wrongKey) }, driver.ErrPermission},
		{"MissingContainer", func(c *testConfig) { c.Container = "no-such-container" }, driver.ErrMisconfigured},
		{"Unreachable", func(c *testConfig) {
			c.ServiceURL = "http://" + testenv.Addr(closed) + "/" + az.Account
		}, driver.ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := goodCfg
			c.cfg(&cfg)
			d := testDriver(t, cfg, 0)
			start := time.Now()
			ops := map[string]func() error{
				"Stat": func() error { _, err := d.Stat(ctx, "mis/obj"); return err },
				"Reader": func() error {
					r, err := d.Reader(ctx, "mis/obj", 0, -1)
					if err == nil {
						r.Close()
					}
					return err
				},
				"ReaderRange": func() error { _, err := d.Reader(ctx, "mis/obj", 1, -1); return err },
				"Put":         func() error { return d.Put(ctx, "mis/new", bytes.NewReader([]byte("y")), 1) },
				"List":        func() error { _, err := d.List(ctx, "mis", "", 0); return err },
				"Delete":      func() error { return d.Delete(ctx, "mis/obj") },
				"Copy":        func() error { return d.Copy(ctx, "mis/obj", "mis/copy") },
				"WriterCommit": func() error {
					w, err := d.Writer(ctx, "mis/w", nil)
					if err != nil {
						return err
					}
					if _, err := w.Write(bytes.Repeat([]byte("w"), testChunk+1)); err != nil {
						return err
					}
					return w.Commit(ctx)
				},
				"WriterState": func() error {
					w, err := d.Writer(ctx, "mis/w", nil)
					if err != nil {
						return err
					}
					if _, err := w.Write([]byte("w")); err != nil {
						return err
					}
					_, err = w.State(ctx)
					return err
				},
				"WriterResume": func() error { _, err := d.Writer(ctx, "mis/upload", st); return err },
			}
			for name, op := range ops {
				err := op()
				if !errors.Is(err, c.want) {
					t.Errorf("%s: want %v, got %v", name, c.want, err)
				}
				if errors.Is(err, driver.ErrNotFound) {
					t.Errorf("%s: ErrNotFound for a misconfiguration: %v", name, err)
				}
			}
			if el := time.Since(start); el > 20*time.Second {
				t.Errorf("failing took %v", el)
			}
		})
	}
	// The good driver still sees everything unchanged.
	if _, err := good.Stat(ctx, "mis/obj"); err != nil {
		t.Errorf("object gone: %v", err)
	}
	if w, err := good.Writer(ctx, "mis/upload", st); err != nil {
		t.Errorf("session disturbed: %v", err)
	} else {
		_ = w.Abort(ctx)
	}
}
