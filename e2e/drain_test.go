package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// probe GETs url on a fresh connection and returns the status (0 when refused).
func probe(url string) int {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logRecords parses the process output as JSON lines (failing on any other line).
func logRecords(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		recs = append(recs, rec)
	}
	return recs
}

func findRecord(recs []map[string]any, msg string) map[string]any {
	for _, r := range recs {
		if strings.Contains(fmt.Sprint(r["msg"]), msg) {
			return r
		}
	}
	return nil
}

// TestDrainReadiness: from the moment SIGTERM arrives /readyz answers 503 while the
// listener keeps serving for http.draindelay; an upload in flight finishes and is stored;
// the process exits 0. The log is JSON lines with durations as strings with a unit, and
// Kubernetes' service-link variables did not stop the start.
func TestDrainReadiness(t *testing.T) {
	root := t.TempDir()
	storage := "  filesystem:\n    rootdirectory: " + root + "\n"
	reg := testenv.StartRegistryd(t, registryConfig(storage, ""),
		"REGISTRY_HTTP_DRAINDELAY=2s", "REGISTRY_HTTP_DRAINTIMEOUT=20s", "REGISTRY_LOG_LEVEL=debug",
		"REGISTRY_PORT=tcp://10.96.0.12:5000", "REGISTRY_PORT_5000_TCP_ADDR=10.96.0.12", "REGISTRY_SERVICE_HOST=10.96.0.12",
		"REGISTRY_SERVICE_PORT=5000")
	if s := probe(reg.URL + "/readyz"); s != 200 {
		t.Fatalf("/readyz before SIGTERM: %d", s)
	}
	resp, err := http.Post(reg.URL+"/v2/drain/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	body := bytes.Repeat([]byte("registryd drains "), 64<<10)
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	loc := reg.URL + resp.Header.Get("Location")
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, loc+sep+"digest="+dgst, pr)
	req.ContentLength = int64(len(body))
	done := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil {
			t.Errorf("in-flight PUT: %v", err)
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	half := len(body) / 2
	if _, err := pw.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	signalled := time.Now()
	if err := syscall.Kill(reg.Cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for probe(reg.URL+"/readyz") != 503 {
		if time.Since(signalled) > time.Second {
			t.Fatal("/readyz did not answer 503 within a second of SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Still serving during the drain delay: new requests are answered.
	if s := probe(reg.URL + "/v2/"); s != 200 || time.Since(signalled) > 2*time.Second {
		t.Errorf("GET /v2/ during the drain delay: %d after %v", s, time.Since(signalled))
	}
	// After the delay the listener is closed; the upload is still in flight.
	time.Sleep(2500*time.Millisecond - time.Since(signalled))
	if s := probe(reg.URL + "/v2/"); s != 0 {
		t.Errorf("GET /v2/ after the drain delay: %d, want a refused connection", s)
	}
	if _, err := pw.Write(body[half:]); err != nil {
		t.Fatalf("write after the listener closed: %v", err)
	}
	pw.Close()
	select {
	case s := <-done:
		if s != http.StatusCreated {
			t.Fatalf("in-flight PUT: %d, want 201", s)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("in-flight PUT not completed")
	}
	select {
	case <-reg.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("registryd did not exit after draining")
	}
	if code := reg.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	recs := logRecords(t, reg.Output())
	started := findRecord(recs, "registryd started")
	if started == nil || started["draindelay"] != "2s" || started["draintimeout"] != "20s" || started["storage"] != "filesystem" {
		t.Errorf("start-up line: %v", started)
	}
	if r := findRecord(recs, "no configuration key"); r == nil || !strings.Contains(fmt.Sprint(r["variables"]), "REGISTRY_PORT") {
		t.Errorf("no debug line naming the ignored service-link variables: %v", r)
	}
	var sawRequest, sawBackend bool
	for _, r := range recs {
		if r["msg"] != "request" && r["msg"] != "backend call" {
			continue
		}
		d, err := time.ParseDuration(fmt.Sprint(r["latency"]))
		if err != nil || d <= 0 {
			t.Errorf("latency %v is not a duration with a unit: %v", r["latency"], r)
		}
		sawRequest = sawRequest || r["msg"] == "request"
		sawBackend = sawBackend || r["msg"] == "backend call"
	}
	if !sawRequest || !sawBackend {
		t.Errorf("log.level debug: request lines %v, backend call lines %v", sawRequest, sawBackend)
	}
	if findRecord(recs, "stopped: every in-flight request finished") == nil {
		t.Error("no clean-stop line")
	}
	// The blob the drained upload wrote is served by the next process.
	next := testenv.StartRegistryd(t, registryConfig(storage, ""))
	got, err := http.Get(next.URL + "/v2/drain/blobs/" + dgst)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if got.StatusCode != 200 || !bytes.Equal(b, body) {
		t.Errorf("GET the drained blob: %d, %d bytes", got.StatusCode, len(b))
	}
}

// TestDrainTimeout: a request still running when http.draintimeout runs out is cut and
// the process exits 1, logging why as JSON.
func TestDrainTimeout(t *testing.T) {
	reg := testenv.StartRegistryd(t, registryConfig(filesystemBackend(t), ""), "REGISTRY_HTTP_DRAINTIMEOUT=1s")
	resp, err := http.Post(reg.URL+"/v2/stuck/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest(http.MethodPatch, reg.URL+resp.Header.Get("Location"), pr)
	go func() {
		if resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := pw.Write(make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	signalled := time.Now()
	if err := syscall.Kill(reg.Cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reg.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("registryd did not exit when the drain timed out")
	}
	if took := time.Since(signalled); took < time.Second {
		t.Errorf("exited after %v, before http.draintimeout", took)
	}
	if code := reg.Cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	r := findRecord(logRecords(t, reg.Output()), "registryd stopped on an error")
	if r == nil || r["level"] != "ERROR" || !strings.Contains(fmt.Sprint(r["error"]), "drain timed out") {
		t.Errorf("no JSON error line for the timed-out drain: %v\n%s", r, reg.Output())
	}
}

// TestReadinessChecksWrites: /readyz fails when the backend refuses writes (a filesystem
// tree made immutable with chattr, which stops root too) while reads still work; in
// read-only mode the same backend is ready.
func TestReadinessChecksWrites(t *testing.T) {
	chattr := testenv.Tool(t, "chattr")
	root := t.TempDir()
	storage := "  filesystem:\n    rootdirectory: " + root + "\n"
	reg := testenv.StartRegistryd(t, registryConfig(storage, ""))
	body := []byte("readable after the backend stops taking writes")
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	resp, err := http.Post(reg.URL+"/v2/ro/blobs/uploads/?digest="+dgst, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	if s := probe(reg.URL + "/readyz"); s != 200 {
		t.Fatalf("/readyz on a writable backend: %d", s)
	}
	immutable(t, chattr, root)
	time.Sleep(5500 * time.Millisecond) // the cached result expires
	if s := probe(reg.URL + "/readyz"); s != 503 {
		t.Errorf("/readyz on a backend refusing writes: %d, want 503", s)
	}
	if s := probe(reg.URL + "/v2/ro/blobs/" + dgst); s != 200 {
		t.Errorf("blob GET on a backend refusing writes: %d, want 200", s)
	}
	if !strings.Contains(reg.Output(), "not ready: backend check failed") {
		t.Errorf("no log line for the failed readiness check:\n%s", reg.Output())
	}
	ro := testenv.StartRegistryd(t, registryConfig(storage, ""), "REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true")
	if s := probe(ro.URL + "/readyz"); s != 200 {
		t.Errorf("/readyz of a read-only registry on a backend refusing writes: %d, want 200", s)
	}
	if s := probe(ro.URL + "/v2/ro/blobs/" + dgst); s != 200 {
		t.Errorf("read-only registry blob GET: %d", s)
	}
}

// immutable makes every file and directory under root immutable until the test ends.
func immutable(t *testing.T, chattr, root string) {
	t.Helper()
	if out, err := exec.Command(chattr, "-R", "+i", root).CombinedOutput(); err != nil {
		t.Fatalf("chattr +i: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(chattr, "-R", "-i", root).CombinedOutput(); err != nil {
			t.Errorf("chattr -i: %v: %s", err, out)
		}
	})
	if err := exec.Command("touch", filepath.Join(root, "probe")).Run(); err == nil {
		t.Fatal("chattr +i did not stop a write by this user")
	}
}

// TestReadinessMinIOReadOnly: on S3 (MinIO) with credentials that may read the bucket but
// not write to it (an STS session policy), /readyz answers 503 while pulls work; the same
// credentials in read-only mode are ready.
func TestReadinessMinIOReadOnly(t *testing.T) {
	m := testenv.StartMinIO(t)
	bucket := m.NewBucket(t)
	rw := testenv.StartRegistryd(t, registryConfig(s3Storage(m, bucket, m.AccessKey, m.SecretKey, m.Endpoint), ""))
	body := []byte("pulled with read-only credentials")
	dgst := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	resp, err := http.Post(rw.URL+"/v2/ro/blobs/uploads/?digest="+dgst, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	if s := probe(rw.URL + "/readyz"); s != 200 {
		t.Fatalf("/readyz with read-write credentials: %d", s)
	}
	access, secret, token := m.ReadOnlyCredentials(t, bucket)
	storage := s3Storage(m, bucket, access, secret, m.Endpoint)
	ro := testenv.StartRegistryd(t, registryConfig(storage, ""), "REGISTRY_STORAGE_S3_SESSIONTOKEN="+token,
		"REGISTRY_STORAGE_RETRY_MAXATTEMPTS=1")
	if s := probe(ro.URL + "/readyz"); s != 503 {
		t.Errorf("/readyz with credentials that cannot write: %d, want 503", s)
	}
	if s := probe(ro.URL + "/v2/ro/blobs/" + dgst); s != 200 {
		t.Errorf("blob GET with read-only credentials: %d, want 200", s)
	}
	if !strings.Contains(ro.Output(), "not ready: backend check failed") {
		t.Errorf("no log line for the failed readiness check:\n%s", ro.Output())
	}
	mode := testenv.StartRegistryd(t, registryConfig(storage, ""), "REGISTRY_STORAGE_S3_SESSIONTOKEN="+token,
		"REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED=true")
	if s := probe(mode.URL + "/readyz"); s != 200 {
		t.Errorf("/readyz in read-only mode with read-only credentials: %d, want 200", s)
	}
}
