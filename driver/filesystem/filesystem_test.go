package filesystem_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/driver/testsuite"
)

func TestConformance(t *testing.T) {
	d, err := filesystem.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testsuite.Run(t, testsuite.Harness{Driver: d})
}

// TestListHidesEmptyDirectories: a directory chain with no object in it (what a crash
// between creating a parent directory and renaming the object into it leaves) is not
// listed, as in an object store; one holding an object at any depth is.
func TestListHidesEmptyDirectories(t *testing.T) {
	root := t.TempDir()
	d, err := filesystem.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(root, "tags", "crashed", "current"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tags", "crashed", "current", "link~tmp"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, "tags/real/current/link", strings.NewReader("sha256:x"), 8); err != nil {
		t.Fatal(err)
	}
	l, err := d.List(ctx, "tags", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Path != "tags/real" || !l[0].IsDir {
		t.Fatalf("List(tags) = %+v, want only tags/real", l)
	}
}
