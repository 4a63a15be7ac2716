package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// TestGracefulShutdown: an upload in flight when SIGTERM arrives completes; then the
// process exits cleanly.
func TestGracefulShutdown(t *testing.T) {
	reg := testenv.StartRegistryd(t, registryConfig(filesystemBackend(t), ""))
	resp, err := http.Post(reg.URL+"/v2/drain/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := reg.URL + resp.Header.Get("Location")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPatch, loc, pr)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("in-flight PATCH failed: %v", err)
			done <- nil
			return
		}
		done <- resp
	}()
	chunk := bytes.Repeat([]byte("d"), 64<<10)
	if _, err := pw.Write(chunk); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the request is being served
	if err := reg.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	for range 10 {
		if _, err := pw.Write(chunk); err != nil {
			t.Fatalf("write after SIGTERM: %v", err)
		}
	}
	pw.Close()
	select {
	case resp := <-done:
		if resp == nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-720895" {
			t.Fatalf("in-flight PATCH: %d range %q", resp.StatusCode, resp.Header.Get("Range"))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("in-flight request not completed")
	}
	select {
	case <-reg.Exited():
		if !reg.Cmd.ProcessState.Success() {
			t.Fatalf("exit status %v", reg.Cmd.ProcessState)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("registryd did not exit after draining")
	}
}

func TestVersionAndBadConfig(t *testing.T) {
	bin := testenv.RegistrydBinary(t)
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "registryd ") {
		t.Fatalf("version: %q %v", out, err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{"REGISTRY_STORAGE_S3_CHUNKSIZE=12", "REGISTRY_STORAGE_S3_BUCKET=b", "REGISTRY_STORAGE_S3_REGION=r"}
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "storage.s3.chunksize") {
		t.Fatalf("bad config: want a failure naming storage.s3.chunksize, got %v: %s", err, out)
	}
}
