package helmchart

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/internal/testenv"
)

// kube drives helm and kubectl against one API server.
type kube struct {
	t                testing.TB
	helm, kubectl    string
	kubeconfig       string
	env              []string
	apiServerStarted time.Duration
}

func (k *kube) helmRun(args ...string) (string, error) {
	res := run(context.Background(), 3*time.Minute, k.env, nil, k.helm, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	return res.stdout, res.err
}

func (k *kube) mustHelm(t testing.TB, args ...string) string {
	t.Helper()
	out, err := k.helmRun(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getJSON returns an object the API server stores, as JSON.
func (k *kube) getJSON(t testing.TB, ns, kind, name string) object {
	t.Helper()
	res := run(context.Background(), time.Minute, nil, nil, k.kubectl, "--kubeconfig", k.kubeconfig, "-n", ns, "get", kind, name, "-o", "json")
	if res.err != nil {
		t.Fatal(res.err)
	}
	var o object
	if err := json.Unmarshal([]byte(res.stdout), &o); err != nil {
		t.Fatalf("kubectl get %s %s: %v", kind, name, err)
	}
	return o
}

// secretValue decodes one key of a stored Secret.
func (k *kube) secretValue(t testing.TB, ns, name, key string) string {
	t.Helper()
	v, err := base64.StdEncoding.DecodeString(str(k.getJSON(t, ns, "secret", name), "data", key))
	if err != nil {
		t.Fatalf("secret %s/%s %s: %v", ns, name, key, err)
	}
	return string(v)
}

// podAnnotations returns the Deployment's pod template annotations and its generation.
func (k *kube) podAnnotations(t testing.TB, ns, name string) (map[string]string, string) {
	t.Helper()
	dep := k.getJSON(t, ns, "deployment", name)
	out := map[string]string{}
	m, _ := get(dep, "spec", "template", "metadata", "annotations").(map[string]any)
	for key, v := range m {
		out[key] = fmt.Sprint(v)
	}
	return out, fmt.Sprint(get(dep, "metadata", "generation"))
}

// startKube starts the one API server of this test process's run.
func startKube(t *testing.T) *kube {
	tools := needTools(t, "helm", "kubectl", "kube-apiserver")
	api := testenv.StartKubeAPIServer(t)
	t.Logf("kube-apiserver ready in %s", api.Took.Round(time.Second))
	return &kube{t: t, helm: tools[0], kubectl: tools[1], kubeconfig: api.Kubeconfig, env: helmEnv(t), apiServerStarted: api.Took}
}

// TestChartOnKubernetes installs the chart on a real Kubernetes API server (one for all
// sub-tests): every example (the API server's validation and defaulting accept every object),
// helm upgrade keeping the generated HTTP secret and htpasswd, a values change rolling the
// pod template, and the chart pushed to registryd as an OCI artifact and installed from oci://.
// The pod itself runs in TestChartPodInDocker's sub-test, on the same API server.
func TestChartOnKubernetes(t *testing.T) {
	k := startKube(t)

	t.Run("examples", func(t *testing.T) {
		// A bare API server has no Gateway API or Prometheus Operator: minimal CRDs stand in,
		// so the HTTPRoute and ServiceMonitor are stored too.
		crds := run(context.Background(), time.Minute, nil, strings.NewReader(minimalCRDs), k.kubectl, "--kubeconfig", k.kubeconfig, "apply", "-f", "-")
		if crds.err != nil {
			t.Fatal(crds.err)
		}
		waitCRDs := run(context.Background(), 2*time.Minute, nil, nil, k.kubectl, "--kubeconfig", k.kubeconfig, "wait", "--for=condition=Established", "--timeout=90s",
			"crd/httproutes.gateway.networking.k8s.io", "crd/servicemonitors.monitoring.coreos.com")
		if waitCRDs.err != nil {
			t.Fatal(waitCRDs.err)
		}
		for _, name := range sortedKeys(examples(t)) {
			file := examples(t)[name]
			ns := "ex-" + name
			notes := k.mustHelm(t, "install", "r", chartDir(t), "-n", ns, "--create-namespace", "-f", file)
			for _, want := range []string{"docker push ", "helm push ", "helm test r -n " + ns} {
				if !strings.Contains(notes, want) {
					t.Errorf("%s: NOTES lack %q:\n%s", name, want, notes)
				}
			}
			if name == "filesystem" && !strings.Contains(notes, "docker login registry.example.com") {
				t.Errorf("filesystem: NOTES lack the docker login of the ingress host:\n%s", notes)
			}
			dep := k.getJSON(t, ns, "deployment", "r-registryd")
			// Defaults the API server fills in prove it decoded and validated the object.
			if got := fmt.Sprint(get(dep, "spec", "progressDeadlineSeconds")); got != "600" {
				t.Errorf("%s: progressDeadlineSeconds = %s, want the API server's default 600", name, got)
			}
			c := get(dep, "spec", "template", "spec", "containers", 0)
			if str(c, "terminationMessagePolicy") != "File" || str(c, "livenessProbe", "httpGet", "scheme") != "HTTP" {
				t.Errorf("%s: container not defaulted: %v", name, c)
			}
			if !strings.HasPrefix(str(c, "image"), "registryd/registryd:") {
				t.Errorf("%s: image %q", name, str(c, "image"))
			}
			list := run(context.Background(), time.Minute, nil, nil, k.kubectl, "--kubeconfig", k.kubeconfig, "-n", ns, "get",
				"deployment,service,configmap,secret,serviceaccount,persistentvolumeclaim,poddisruptionbudget,horizontalpodautoscaler,ingress,networkpolicy,httproute,servicemonitor", "-o", "name")
			if list.err != nil {
				t.Fatal(list.err)
			}
			stored := map[string]bool{}
			for _, line := range strings.Fields(list.stdout) {
				// "deployment.apps/r-registryd" -> "deployment/r-registryd"
				resource, objName, _ := strings.Cut(line, "/")
				resource, _, _ = strings.Cut(resource, ".")
				stored[resource+"/"+objName] = true
			}
			manifest := k.mustHelm(t, "get", "manifest", "r", "-n", ns)
			objs := parseObjects(t, manifest)
			for _, o := range objs {
				if want := strings.ToLower(o.kind()) + "/" + o.name(); !stored[want] {
					t.Errorf("%s: %s not stored:\n%s", name, want, list.stdout)
				}
			}
			if len(objs) < 6 {
				t.Errorf("%s: only %d objects in the release", name, len(objs))
			}
		}
	})

	t.Run("upgrade keeps the HTTP secret, a change rolls the pods", func(t *testing.T) {
		ns := "upgrade"
		args := []string{"-n", ns, "--set", "auth.htpasswd.enabled=true,auth.htpasswd.users[0].username=ci,auth.htpasswd.users[0].password=pw-0123456789"}
		k.mustHelm(t, append([]string{"install", "r", chartDir(t), "--create-namespace"}, args...)...)
		secret := k.secretValue(t, ns, "r-registryd", "http-secret")
		htpasswd := k.secretValue(t, ns, "r-registryd", "htpasswd")
		ann1, gen1 := k.podAnnotations(t, ns, "r-registryd")
		if len(secret) < 32 || !strings.HasPrefix(htpasswd, "ci:$2") {
			t.Fatalf("generated http-secret %q, htpasswd %q", secret, htpasswd)
		}
		k.mustHelm(t, append([]string{"upgrade", "r", chartDir(t)}, args...)...)
		ann2, gen2 := k.podAnnotations(t, ns, "r-registryd")
		if got := k.secretValue(t, ns, "r-registryd", "http-secret"); got != secret {
			t.Errorf("helm upgrade changed the HTTP secret: %q -> %q", secret, got)
		}
		if got := k.secretValue(t, ns, "r-registryd", "htpasswd"); got != htpasswd {
			t.Errorf("helm upgrade re-hashed the unchanged htpasswd users")
		}
		if ann1["checksum/config"] != ann2["checksum/config"] || ann1["checksum/secret"] != ann2["checksum/secret"] || gen1 != gen2 {
			t.Errorf("an upgrade without changes rolls the pods: %v gen %s -> %v gen %s", ann1, gen1, ann2, gen2)
		}
		k.mustHelm(t, append([]string{"upgrade", "r", chartDir(t)}, append(args, "--set", "log.level=debug")...)...)
		ann3, gen3 := k.podAnnotations(t, ns, "r-registryd")
		if ann3["checksum/config"] == ann2["checksum/config"] || gen3 == gen2 {
			t.Errorf("a config change did not roll the pod template: %v gen %s -> %v gen %s", ann2, gen2, ann3, gen3)
		}
		if ann3["checksum/secret"] != ann2["checksum/secret"] || k.secretValue(t, ns, "r-registryd", "http-secret") != secret {
			t.Error("a config change touched the secret")
		}
		k.mustHelm(t, append([]string{"upgrade", "r", chartDir(t)}, append(args, "--set", "log.level=debug,auth.htpasswd.users[0].password=rotated-0123456789")...)...)
		ann4, _ := k.podAnnotations(t, ns, "r-registryd")
		if ann4["checksum/secret"] == ann3["checksum/secret"] || k.secretValue(t, ns, "r-registryd", "htpasswd") == htpasswd {
			t.Error("a password change did not re-hash htpasswd or roll the pods")
		}
	})

	t.Run("several replicas get a generated secret only where the cluster is seen", func(t *testing.T) {
		ns := "replicas"
		set := "storage.backend=s3,storage.s3.bucket=b,storage.s3.region=r,replicaCount=3"
		k.mustHelm(t, "install", "r", chartDir(t), "-n", ns, "--create-namespace", "--set", set)
		secret := k.secretValue(t, ns, "r-registryd", "http-secret")
		k.mustHelm(t, "upgrade", "r", chartDir(t), "-n", ns, "--set", set+",log.level=debug")
		if got := k.secretValue(t, ns, "r-registryd", "http-secret"); got != secret {
			t.Errorf("upgrade of 3 replicas changed the HTTP secret")
		}
		if _, err := template(t, k.helm, "--set", set); err == nil || !strings.Contains(err.Error(), "httpSecret") {
			t.Errorf("helm template of 3 replicas without a secret: %v; want the httpSecret failure", err)
		}
	})

	t.Run("chart as an OCI artifact in registryd, installed from oci://", func(t *testing.T) {
		reg := testenv.StartRegistryd(t, fmt.Sprintf("version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n", t.TempDir()))
		dir := t.TempDir()
		k.mustHelm(t, "package", chartDir(t), "-d", dir)
		pkgs, _ := filepath.Glob(filepath.Join(dir, "registryd-*.tgz"))
		if len(pkgs) != 1 {
			t.Fatalf("helm package wrote %v", pkgs)
		}
		out := k.mustHelm(t, "push", pkgs[0], "oci://"+reg.Host+"/charts", "--plain-http")
		_ = out
		k.mustHelm(t, "install", "from-oci", "oci://"+reg.Host+"/charts/registryd", "--version", "0.1.0", "--plain-http", "-n", "oci", "--create-namespace")
		if got := str(k.getJSON(t, "oci", "configmap", "from-oci-registryd"), "data", "config.yml"); !strings.Contains(got, "rootdirectory: /var/lib/registry") {
			t.Errorf("installed from oci://: config.yml = %s", got)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Log(err)
		}
	})

	t.Run("pod as Kubernetes would run it", func(t *testing.T) {
		testPodInDocker(t, k, func(t *testing.T, set []string) (fetchFunc, string) {
			k.mustHelm(t, "install", "r", chartDir(t), "-n", "pod", "--create-namespace", "--set", strings.Join(set, ","))
			fetch := func(t testing.TB, kind, name string) object { return k.getJSON(t, "pod", kind, name) }
			return fetch, k.mustHelm(t, "get", "hooks", "r", "-n", "pod")
		})
	})
}

// minimalCRDs define HTTPRoute and ServiceMonitor with open schemas, as a stand-in for the
// Gateway API and Prometheus Operator CRDs on a bare API server.
const minimalCRDs = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  annotations:
    # *.k8s.io groups need it; the Gateway API CRDs carry this one.
    api-approved.kubernetes.io: https://github.com/kubernetes-sigs/gateway-api/pull/1538
spec:
  group: gateway.networking.k8s.io
  scope: Namespaced
  names: {plural: httproutes, singular: httproute, kind: HTTPRoute, listKind: HTTPRouteList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {plural: servicemonitors, singular: servicemonitor, kind: ServiceMonitor, listKind: ServiceMonitorList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`
