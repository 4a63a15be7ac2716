package s3_test

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// TestWriterThroughput pushes REGISTRYD_WRITER_THROUGHPUT MiB (256 when set to "1")
// through one Writer against MinIO in 16 MiB parts, three rounds, and logs each round's
// rate and the median. A measurement, not a pass/fail check: it runs only when the
// variable is set.
func TestWriterThroughput(t *testing.T) {
	v := os.Getenv("REGISTRYD_WRITER_THROUGHPUT")
	if v == "" {
		t.Skip("set REGISTRYD_WRITER_THROUGHPUT=1 (or a size in MiB) to measure")
	}
	mib, err := strconv.Atoi(v)
	if err != nil || mib <= 1 {
		mib = 256
	}
	isolate(t)
	m := testenv.StartMinIO(t)
	cfg := minioConfig(m, m.NewBucket(t))
	cfg.ChunkSize = 16 << 20
	d := newDriver(t, cfg)
	ctx := context.Background()
	total := int64(mib) << 20
	var rates []float64
	for round := range 3 {
		src := io.LimitReader(pseudo{rand.NewPCG(uint64(round), 1)}, total)
		start := time.Now()
		w, err := d.Writer(ctx, "throughput/data", nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, src); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		rate := float64(total) / (1 << 20) / time.Since(start).Seconds()
		rates = append(rates, rate)
		t.Logf("round %d: %d MiB in %v: %.1f MiB/s", round, mib, time.Since(start).Round(time.Millisecond), rate)
	}
	sort.Float64s(rates)
	t.Logf("median: %.1f MiB/s", rates[len(rates)/2])
}

// pseudo is a fast source of incompressible bytes.
type pseudo struct{ r *rand.PCG }

func (p pseudo) Read(b []byte) (int, error) {
	n := len(b)
	for len(b) >= 8 {
		u := p.r.Uint64()
		for i := range 8 {
			b[i] = byte(u >> (8 * i))
		}
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(p.r.Uint64())
	}
	return n, nil
}
