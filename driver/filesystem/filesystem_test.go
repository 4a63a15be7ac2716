package filesystem_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/registryd/registryd/driver"
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

// helperEnv names the directory a re-executed test binary works in as a PutIf helper
// process (see TestPutIfAcrossProcesses).
const helperEnv = "REGISTRYD_FS_PUTIF_HELPER_DIR"

// TestPutIfAcrossProcesses: several processes sharing one directory (replicas on one
// volume) race create-if-absent on one path, where exactly one wins, then increment a
// counter object with read-then-PutIf(version) loops: no increment is lost, which holds
// only if the comparison and the rename are atomic across processes.
func TestPutIfAcrossProcesses(t *testing.T) {
	if dir := os.Getenv(helperEnv); dir != "" {
		putIfHelper(t, dir)
		return
	}
	const procs, increments = 4, 40
	dir := t.TempDir()
	d, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := d.Put(ctx, "counter", strings.NewReader("0"), 1); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	outs := make([]*strings.Builder, procs)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPutIfAcrossProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+dir, "REGISTRYD_FS_PUTIF_INCREMENTS="+strconv.Itoa(increments))
		outs[i] = &strings.Builder{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
	}
	winners := 0
	for _, o := range outs {
		winners += strings.Count(o.String(), "WON-CREATE")
	}
	if winners != 1 {
		t.Errorf("%d processes won create-if-absent, want 1", winners)
	}
	rc, err := d.Reader(ctx, "counter", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if got, want := string(b), strconv.Itoa(procs*increments); got != want {
		t.Fatalf("counter = %s after %d processes × %d increments, want %s", got, procs, increments, want)
	}
}

// putIfHelper is the body of one helper process of TestPutIfAcrossProcesses.
func putIfHelper(t *testing.T, dir string) {
	d, err := filesystem.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	me := strconv.Itoa(os.Getpid())
	if _, err := d.PutIf(ctx, "winner", strings.NewReader(me), -1, ""); err == nil {
		fmt.Println("WON-CREATE")
	} else if !errors.Is(err, driver.ErrPreconditionFailed) {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv("REGISTRYD_FS_PUTIF_INCREMENTS"))
	for done := 0; done < n; {
		rc, err := d.Reader(ctx, "counter", 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		v := driver.ReaderVersion(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		c, err := strconv.Atoi(string(b))
		if err != nil {
			t.Fatalf("counter %q: %v", b, err)
		}
		_, err = d.PutIf(ctx, "counter", strings.NewReader(strconv.Itoa(c+1)), -1, v)
		switch {
		case err == nil:
			done++
		case !errors.Is(err, driver.ErrPreconditionFailed):
			t.Fatal(err)
		}
	}
}
