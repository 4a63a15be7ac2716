package partbuf

import (
	"testing"
	"time"
)

func TestFreeList(t *testing.T) {
	f := New(8, 2, time.Hour)
	a, b, c := f.Get(), f.Get(), f.Get()
	for _, x := range [][]byte{a, b, c} {
		if len(x) != 0 || cap(x) != 8 {
			t.Fatalf("Get: len %d cap %d, want 0 and 8", len(x), cap(x))
		}
	}
	a = append(a, "abc"...)
	f.Put(a)
	f.Put(b)
	f.Put(c)               // beyond max: dropped
	f.Put(make([]byte, 4)) // wrong capacity: dropped
	if n := f.Len(); n != 2 {
		t.Fatalf("kept %d buffers, want 2", n)
	}
	if x := f.Get(); len(x) != 0 || cap(x) != 8 || &x[:1][0] != &b[:1][0] {
		t.Fatal("Get did not return the last buffer put back, emptied")
	}
}

func TestFreeListIdleTrim(t *testing.T) {
	f := New(8, 4, 20*time.Millisecond)
	f.Put(f.Get())
	f.Put(make([]byte, 0, 8))
	deadline := time.Now().Add(5 * time.Second)
	for f.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("still %d buffers after the list was idle", f.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// It keeps working after a trim.
	f.Put(make([]byte, 0, 8))
	if f.Len() != 1 {
		t.Fatal("Put after a trim kept nothing")
	}
}
