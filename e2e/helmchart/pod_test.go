package helmchart

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/registryd/registryd/internal/release"
	"github.com/registryd/registryd/internal/testenv"
)

// buildReleaseImage builds the release binary as scripts/build-image.sh does and the image
// with internal/release, and returns the image's tarball, tag and version.
func buildReleaseImage(t *testing.T) (tarPath, tag, version string) {
	t.Helper()
	dir := t.TempDir()
	version = "0.1.0-e2e." + strconv.FormatInt(time.Now().Unix(), 10)
	bin := filepath.Join(dir, "registryd")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/registryd")
	cmd.Dir = filepath.Join(chartDir(t), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.SplitN(string(out), "\n", 2)[0] != "registryd "+version {
		t.Fatalf("registryd version = %q, %v; want %q", out, err, "registryd "+version)
	}
	if st, err := os.Stat(bin); err == nil {
		t.Logf("release binary: %.1f MB (static, stripped)", float64(st.Size())/(1<<20))
	}
	img, err := release.Build(release.Options{Binary: bin, Version: version, Revision: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	tag = "registryd/registryd:" + version
	tarPath = filepath.Join(dir, "image.tar")
	if err := release.WriteTarball(img, tag, tarPath); err != nil {
		t.Fatal(err)
	}
	// The registry hosts itself: the image is pushed to a running registryd and read back.
	reg := testenv.StartRegistryd(t, fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n", t.TempDir()))
	ref := reg.Host + "/registryd/registryd:" + version
	if err := release.Push(img, ref, true, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	r, _ := name.ParseReference(ref, name.Insecure)
	desc, err := remote.Head(r)
	if err != nil || desc.Digest != want {
		t.Fatalf("pushed image: %v %v, want digest %s", desc, err, want)
	}
	return tarPath, tag, version
}

// fetchFunc returns a stored object by kind (lower case) and name.
type fetchFunc func(t testing.TB, kind, name string) object

// installFunc installs the chart with --set values and returns how to read its objects back
// and its hooks (the helm test pod) as YAML.
type installFunc func(t *testing.T, set []string) (fetchFunc, string)

// podRun is the docker run of the pod's registryd container.
type podRun struct {
	args           []string          // docker run arguments
	ports          map[string]int    // container port by name
	grace          time.Duration     // terminationGracePeriodSeconds
	preStop        []string          // the preStop exec command
	probes         map[string]string // startup/liveness/readiness -> "path port-name"
	username, pass string
}

// dockerRunFromPod turns the Deployment the API server stores, with its ConfigMap and Secret,
// into `docker run` arguments: the container's command, args, environment (values and Secret
// references resolved), user, read-only root filesystem, dropped capabilities, no new
// privileges, and its volumes (ConfigMap and Secret files written out, emptyDirs as tmpfs or
// a directory owned by the pod's fsGroup).
func dockerRunFromPod(t *testing.T, fetch fetchFunc, deployment, container string) podRun {
	t.Helper()
	dep := fetch(t, "deployment", deployment)
	pod := get(dep, "spec", "template", "spec")
	var c any
	for _, cc := range get(pod, "containers").([]any) {
		if str(cc, "name") == container {
			c = cc
		}
	}
	if c == nil {
		t.Fatalf("no container %s in %v", container, pod)
	}
	run := podRun{ports: map[string]int{}, probes: map[string]string{}}
	secrets := map[string]object{}
	secret := func(name string) object {
		if s, ok := secrets[name]; ok {
			return s
		}
		secrets[name] = fetch(t, "secret", name)
		return secrets[name]
	}
	uid := fmt.Sprint(get(c, "securityContext", "runAsUser"))
	if uid == "<nil>" {
		uid = fmt.Sprint(get(pod, "securityContext", "runAsUser"))
	}
	gid := fmt.Sprint(get(pod, "securityContext", "runAsGroup"))
	a := []string{"run", "-d", "--network", "host", "--user", uid + ":" + gid}
	if get(c, "securityContext", "readOnlyRootFilesystem") == true {
		a = append(a, "--read-only")
	}
	if str(c, "securityContext", "capabilities", "drop", 0) == "ALL" {
		a = append(a, "--cap-drop", "ALL")
	}
	if get(c, "securityContext", "allowPrivilegeEscalation") == false {
		a = append(a, "--security-opt", "no-new-privileges")
	}
	for _, e := range get(c, "env").([]any) {
		v := str(e, "value")
		if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
			data := str(secret(str(ref, "name")), "data", str(ref, "key"))
			if data == "" && get(ref, "optional") == true {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(data)
			if err != nil || data == "" {
				t.Fatalf("env %s: secret %v: %v", str(e, "name"), ref, err)
			}
			v = string(b)
		}
		a = append(a, "-e", str(e, "name")+"="+v)
	}
	volumes := map[string]any{}
	for _, v := range get(pod, "volumes").([]any) {
		volumes[str(v, "name")] = v
	}
	hostDir := t.TempDir()
	fsGroup := fmt.Sprint(get(pod, "securityContext", "fsGroup"))
	for i, m := range get(c, "volumeMounts").([]any) {
		v := volumes[str(m, "name")]
		src := filepath.Join(hostDir, fmt.Sprintf("vol%d", i))
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		var files map[string]string
		switch {
		case get(v, "configMap") != nil:
			cm := fetch(t, "configmap", str(v, "configMap", "name"))
			files = map[string]string{}
			for key, val := range get(cm, "data").(map[string]any) {
				files[key] = fmt.Sprint(val)
			}
		case get(v, "secret") != nil:
			s := secret(str(v, "secret", "secretName"))
			files = map[string]string{}
			items, _ := get(v, "secret", "items").([]any)
			for key, val := range get(s, "data").(map[string]any) {
				b, _ := base64.StdEncoding.DecodeString(fmt.Sprint(val))
				path := key
				if items != nil {
					path = ""
					for _, it := range items {
						if str(it, "key") == key {
							path = str(it, "path")
						}
					}
				}
				if path != "" {
					files[path] = string(b)
				}
			}
		case get(v, "emptyDir") != nil:
			if get(c, "securityContext", "readOnlyRootFilesystem") == true && str(m, "mountPath") == "/tmp" {
				a = append(a, "--tmpfs", "/tmp:rw,mode=1777")
				continue
			}
			// An emptyDir belongs to the pod's fsGroup, group-writable.
			gidN, _ := strconv.Atoi(fsGroup)
			if err := os.Chown(src, 0, gidN); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(src, 0o2775); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("volume %s of a kind this test does not run: %v", str(m, "name"), v)
		}
		for path, content := range files {
			if err := os.WriteFile(filepath.Join(src, path), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if sub := str(m, "subPath"); sub != "" {
			src = filepath.Join(src, sub)
		}
		spec := src + ":" + str(m, "mountPath")
		if get(m, "readOnly") == true {
			spec += ":ro"
		}
		a = append(a, "-v", spec)
	}
	for _, p := range get(c, "ports").([]any) {
		n, _ := strconv.Atoi(fmt.Sprint(get(p, "containerPort")))
		run.ports[str(p, "name")] = n
	}
	for _, probe := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		run.probes[probe] = str(c, probe, "httpGet", "path") + " " + fmt.Sprint(get(c, probe, "httpGet", "port"))
	}
	cmd := toStrings(get(c, "command"))
	a = append(a, "--entrypoint", cmd[0], str(c, "image"))
	a = append(a, cmd[1:]...)
	a = append(a, toStrings(get(c, "args"))...)
	run.args = a
	run.preStop = toStrings(get(c, "lifecycle", "preStop", "exec", "command"))
	g, _ := strconv.Atoi(fmt.Sprint(get(pod, "terminationGracePeriodSeconds")))
	run.grace = time.Duration(g) * time.Second
	return run
}

// probe GETs a probe's path on its port the way the kubelet does (any 2xx or 3xx passes).
func probe(ctx context.Context, pr podRun, which string) error {
	path, port, _ := strings.Cut(pr.probes[which], " ")
	n, ok := pr.ports[port]
	if !ok {
		n, _ = strconv.Atoi(port)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", n, path), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("%s %s: %s", which, path, resp.Status)
	}
	return nil
}

// testPodInDocker runs the chart's pod, as the API server stores it, in the Docker engine from
// the release image built without a daemon: probes, docker/helm/oras push and pull, the helm
// test pod, and a SIGTERM that drains an in-flight upload within the grace period.
func testPodInDocker(t *testing.T, k *kube, install installFunc) {
	oras := needTools(t, "oras")[0]
	tarPath, tag, version := buildReleaseImage(t)
	dk := testenv.StartDockerd(t)
	dk.Run(t, "load", "-i", tarPath)
	if out := dk.Run(t, "run", "--rm", "--network", "host", "--read-only", "--user", "65532", tag, "version"); strings.SplitN(out, "\n", 2)[0] != "registryd "+version {
		t.Fatalf("docker run %s version = %q", tag, out)
	}
	inspect := dk.Run(t, "image", "inspect", "--format", "{{.Config.User}} {{index .Config.Labels \"org.opencontainers.image.version\"}}", tag)
	if strings.TrimSpace(inspect) != "65532:65532 "+version {
		t.Errorf("image user and version label: %q", inspect)
	}

	port, metricsPort := testenv.FreePort(t), testenv.FreePort(t)
	repo, tagOnly, _ := strings.Cut(tag, ":")
	set := []string{
		"image.repository=" + repo, "image.tag=" + tagOnly, "image.pullPolicy=Never",
		fmt.Sprintf("service.port=%d", port), fmt.Sprintf("metrics.port=%d", metricsPort),
		"storage.filesystem.persistence.enabled=false", "storage.delete.enabled=true",
		"shutdown.preStopSeconds=1", "shutdown.drainDelaySeconds=2", "shutdown.drainTimeoutSeconds=20", "shutdown.terminationGracePeriodSeconds=30",
	}
	set = append(set, "auth.htpasswd.enabled=true", "auth.htpasswd.users[0].username=ci", "auth.htpasswd.users[0].password=pod-test-0123456789")
	fetch, hooks := install(t, set)
	pr := dockerRunFromPod(t, fetch, "r-registryd", "registryd")
	pr.username, pr.pass = "ci", "pod-test-0123456789"
	id := strings.TrimSpace(dk.Run(t, append(pr.args[:1], append([]string{"--name", "registryd-pod"}, pr.args[1:]...)...)...))
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := dk.Exec(context.Background(), "logs", id)
			t.Logf("container logs:\n%s", logs)
		}
		_, _ = dk.Exec(context.Background(), "rm", "-f", id)
	})

	// Startup, then liveness and readiness, at the declared paths and ports.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	deadline := time.Now().Add(time.Minute)
	for probe(ctx, pr, "startupProbe") != nil {
		if time.Now().After(deadline) {
			logs, _ := dk.Exec(ctx, "logs", id)
			t.Fatalf("startup probe never passed: %v\n%s", probe(ctx, pr, "startupProbe"), logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range []string{"livenessProbe", "readinessProbe"} {
		if err := probe(ctx, pr, p); err != nil {
			t.Fatal(err)
		}
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	if resp, err := http.Get("http://" + host + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("the public port serves /healthz; the debug listener should")
		}
	}

	resp, err := http.Get("http://" + host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /v2/ with htpasswd on: %s, want 401", resp.Status)
	}

	// docker push and pull through the container's port.
	login := dk.Command(ctx, "login", host, "-u", pr.username, "--password-stdin")
	login.Stdin = strings.NewReader(pr.pass)
	if out, err := login.CombinedOutput(); err != nil {
		t.Fatalf("docker login: %v\n%s", err, out)
	}
	ref := host + "/registryd/registryd:" + tagOnly
	dk.Run(t, "tag", tag, ref)
	dk.Run(t, "push", ref)
	dk.Run(t, "rmi", ref)
	dk.Run(t, "pull", ref)

	// helm push and pull of the chart, oras push and pull of a file.
	hdir := t.TempDir()
	k.mustHelm(t, "package", chartDir(t), "-d", hdir)
	pkgs, _ := filepath.Glob(filepath.Join(hdir, "registryd-*.tgz"))
	res := run(ctx, time.Minute, k.env, strings.NewReader(pr.pass), k.helm, "registry", "login", host, "--plain-http", "-u", pr.username, "--password-stdin")
	if res.err != nil {
		t.Fatal(res.err)
	}
	k.mustHelm(t, "push", pkgs[0], "oci://"+host+"/charts", "--plain-http")
	k.mustHelm(t, "pull", "oci://"+host+"/charts/registryd", "--version", "0.1.0", "--plain-http", "-d", t.TempDir())
	odir := t.TempDir()
	note := filepath.Join(odir, "notes.txt")
	if err := os.WriteFile(note, []byte("pushed by oras through the pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	orasAuth := []string{"-u", pr.username, "-p", pr.pass}
	orasRun := func(args ...string) {
		t.Helper()
		c := exec.CommandContext(ctx, oras, append(args, orasAuth...)...)
		c.Dir = odir
		c.Env = append(os.Environ(), "HOME="+odir)
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("oras %v: %v\n%s", args[0], err, out)
		}
	}
	orasRun("push", "--plain-http", host+"/notes/readme:v1", "notes.txt")
	pulled := filepath.Join(odir, "pulled")
	orasRun("pull", "--plain-http", "-o", pulled, host+"/notes/readme:v1")
	if b, err := os.ReadFile(filepath.Join(pulled, "notes.txt")); err != nil || string(b) != "pushed by oras through the pod\n" {
		t.Errorf("oras pull: %q %v", b, err)
	}

	// The helm test pod, as helm would create it, with the Service name resolving to the pod.
	var testPod object
	for _, o := range parseObjects(t, hooks) {
		if o.kind() == "Pod" {
			testPod = o
		}
	}
	if testPod == nil {
		t.Fatalf("no test pod in the hooks:\n%s", hooks)
	}
	tc := get(testPod, "spec", "containers", 0)
	targs := []string{"run", "--rm", "--network", "host", "--read-only", "--user", "65532", "--add-host", "r-registryd:127.0.0.1"}
	targs = append(targs, "-e", "REGISTRYD_SELFTEST_USERNAME="+pr.username, "-e", "REGISTRYD_SELFTEST_PASSWORD="+pr.pass)
	targs = append(targs, "--entrypoint", toStrings(get(tc, "command"))[0], str(tc, "image"))
	targs = append(targs, toStrings(get(tc, "args"))...)
	if out := dk.Run(t, targs...); !strings.Contains(out, "pushed and pulled sha256:") {
		t.Errorf("helm test pod: %s", out)
	}

	// Termination as the kubelet does it: preStop, then SIGTERM, with an upload in flight
	// that must complete; the container must exit 0 within the grace period.
	drainUpload(t, ctx, dk, id, pr, host)
}

// drainUpload streams a PATCH slowly, runs the preStop hook and sends SIGTERM while it is in
// flight, and checks the PATCH succeeds and the container stops cleanly within the grace.
func drainUpload(t *testing.T, ctx context.Context, dk *testenv.Dockerd, id string, pr podRun, host string) {
	t.Helper()
	client := &http.Client{}
	do := func(req *http.Request) (*http.Response, error) {
		if pr.username != "" {
			req.SetBasicAuth(pr.username, pr.pass)
		}
		return client.Do(req)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+host+"/v2/drain/test/blobs/uploads/", nil)
	resp, err := do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %v %v", resp, err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = "http://" + host + loc
	}
	const chunks, chunkSize = 30, 64 << 10
	pipeR, pipeW := io.Pipe()
	started := make(chan struct{})
	go func() {
		buf := make([]byte, chunkSize)
		for i := range chunks {
			_, _ = rand.Read(buf)
			if _, err := pipeW.Write(buf); err != nil {
				return
			}
			if i == 0 {
				close(started)
			}
			time.Sleep(150 * time.Millisecond)
		}
		pipeW.Close()
	}()
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc, pipeR)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{status: resp.StatusCode}
	}()
	<-started
	stopStart := time.Now()
	if len(pr.preStop) > 0 {
		if out, err := dk.Exec(ctx, append([]string{"exec", id}, pr.preStop...)...); err != nil {
			t.Fatalf("preStop %v: %v %s", pr.preStop, err, out)
		}
	}
	dk.Run(t, "kill", "--signal", "TERM", id)
	time.Sleep(200 * time.Millisecond)
	if err := probe(ctx, pr, "readinessProbe"); err == nil {
		t.Error("readiness still passes after SIGTERM")
	}
	r := <-done
	if r.err != nil || r.status != http.StatusAccepted {
		t.Fatalf("in-flight PATCH across SIGTERM: status %d, %v", r.status, r.err)
	}
	wctx, cancel := context.WithTimeout(ctx, pr.grace-time.Since(stopStart))
	defer cancel()
	code, err := dk.Exec(wctx, "wait", id)
	if err != nil {
		t.Fatalf("container not stopped within the grace period %s: %v", pr.grace, err)
	}
	if strings.TrimSpace(code) != "0" {
		t.Errorf("container exit code %s after SIGTERM", code)
	}
	t.Logf("drained: %d KiB upload finished, container stopped %s after preStop (grace %s)",
		chunks*chunkSize>>10, time.Since(stopStart).Round(100*time.Millisecond), pr.grace)
}
