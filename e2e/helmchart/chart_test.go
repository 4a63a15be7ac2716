// Package helmchart tests the Helm chart helm/registryd: lint, render and schema validation of
// every example offline (helm, kubeconform with Kubernetes' own schemas), the chart installed
// on a real Kubernetes API server (kube-apiserver on etcd), and its pod run as Kubernetes would
// run it, in the Docker engine, from the daemon-less release image.
package helmchart

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/internal/testenv"
)

// template renders the chart with helm template and the given extra arguments.
func template(t testing.TB, helm string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"template", "r", chartDir(t), "--namespace", "registry"}, args...)
	res := run(context.Background(), time.Minute, helmEnv(t), nil, helm, full...)
	return res.stdout, res.err
}

// TestChartExamples lints every example values file with --strict, renders it, validates every
// object with kubeconform -strict against the Kubernetes schemas, and checks that the rendered
// config.yml is one registryd loads.
func TestChartExamples(t *testing.T) {
	tools := needTools(t, "helm", "kubeconform")
	helm, kubeconform := tools[0], tools[1]
	schemas := filepath.Join(testenv.ToolsDir(), "k8s-schemas")
	valueSets := map[string][]string{"defaults": nil}
	for name, file := range examples(t) {
		valueSets[name] = []string{"-f", file}
	}
	// Every optional object at once, to validate them too.
	valueSets["everything"] = []string{"--set", "storage.backend=s3,storage.s3.bucket=b,storage.s3.region=r,replicaCount=2,httpSecret.value=0123456789abcdef0123,ingress.enabled=true,ingress.hosts[0]=r.example.com,networkPolicy.enabled=true,metrics.serviceMonitor.enabled=true,httpRoute.enabled=true,httpRoute.parentRefs[0].name=gw,autoscaling.enabled=true,tls.enabled=true,tls.secretName=tls,tls.clientCASecret=ca,auth.token.enabled=true,auth.token.realm=https://auth.example.com/token,auth.token.service=registry,auth.token.issuer=auth,auth.token.existingSecret=token-certs"}
	for _, name := range sortedKeys(valueSets) {
		args := valueSets[name]
		t.Run(name, func(t *testing.T) {
			lint := run(context.Background(), time.Minute, helmEnv(t), nil, helm, append([]string{"lint", "--strict", chartDir(t)}, args...)...)
			if lint.err != nil {
				t.Fatalf("helm lint --strict: %v\n%s", lint.err, lint.stdout)
			}
			out, err := template(t, helm, args...)
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			// ServiceMonitor and HTTPRoute are CRDs, not in Kubernetes' own schemas: skipped by
			// kind only, and checked structurally in TestChartRendering.
			kc := run(context.Background(), time.Minute, nil, strings.NewReader(out), kubeconform,
				"-strict", "-summary", "-output", "text", "-skip", "ServiceMonitor,HTTPRoute",
				"-schema-location", filepath.Join(schemas, "{{ .ResourceKind }}{{ .KindSuffix }}.json"))
			if kc.err != nil {
				t.Fatalf("kubeconform -strict: %v\n%s\n--- manifests ---\n%s", kc.err, kc.stdout, out)
			}
			if !strings.Contains(kc.stdout, "Invalid: 0, Errors: 0") {
				t.Fatalf("kubeconform: %s", kc.stdout)
			}
			objs := parseObjects(t, out)
			cm := find(t, objs, "ConfigMap", "r-registryd")
			cfg := str(cm, "data", "config.yml")
			env := []string{"REGISTRY_HTTP_SECRET=0123456789abcdef0123456789"}
			if _, err := config.Load(strings.NewReader(cfg), env); err != nil {
				t.Fatalf("registryd refuses the rendered config: %v\n%s", err, cfg)
			}
		})
	}
}

// TestChartRejects proves that the schema and the render-time checks refuse bad values, each
// with a message that names what is wrong.
func TestChartRejects(t *testing.T) {
	helm := needTools(t, "helm")[0]
	for _, tc := range []struct {
		name string
		set  string
		want []string
	}{
		{"unknown backend", "storage.backend=swift", []string{"/storage/backend", "filesystem"}},
		{"unknown top-level key", "replicas=3", []string{"replicas"}},
		{"typo in a backend key", "storage.backend=s3,storage.s3.bucket=b,storage.s3.region=r,storage.s3.sceure=false", []string{"sceure"}},
		{"s3 without bucket", "storage.backend=s3,storage.s3.region=r", []string{"/storage/s3", "bucket"}},
		{"s3 without region or endpoint", "storage.backend=s3,storage.s3.bucket=b", []string{"/storage/s3"}},
		{"gcs without bucket", "storage.backend=gcs", []string{"/storage/gcs", "bucket"}},
		{"azure without container", "storage.backend=azure,storage.azure.accountname=a", []string{"/storage/azure", "container"}},
		{"a string for a boolean", "storage.delete.enabled=yes", []string{"/storage/delete/enabled"}},
		{"aws identity without role", "cloudIdentity.provider=aws", []string{"/cloudIdentity/aws", "roleArn"}},
		{"gcp identity with a bad account", "cloudIdentity.provider=gcp,cloudIdentity.gcp.serviceAccount=me", []string{"/cloudIdentity/gcp/serviceAccount"}},
		{"short http secret", "httpSecret.value=short", []string{"/httpSecret/value"}},
		{"replicas on a ReadWriteOnce volume", "replicaCount=2,httpSecret.value=0123456789abcdef0123", []string{"accessMode=ReadWriteOnce", "ReadWriteMany"}},
		{"replicas on an existing ReadWriteOnce claim", "replicaCount=2,httpSecret.value=0123456789abcdef0123,storage.filesystem.persistence.existingClaim=data", []string{"accessMode=ReadWriteOnce"}},
		{"autoscaling on an emptyDir", "autoscaling.enabled=true,storage.filesystem.persistence.enabled=false,httpSecret.value=0123456789abcdef0123", []string{"emptyDir"}},
		{"replicas without a stable HTTP secret", "storage.backend=s3,storage.s3.bucket=b,storage.s3.region=r,replicaCount=3", []string{"httpSecret", "httpSecret.existingSecret", "httpSecret.value"}},
		{"autoscaling without a stable HTTP secret", "storage.backend=gcs,storage.gcs.bucket=b,autoscaling.enabled=true", []string{"httpSecret"}},
		{"drain longer than the grace period", "shutdown.drainTimeoutSeconds=120", []string{"terminationGracePeriodSeconds (90)", "drainTimeoutSeconds (120)"}},
		{"identity together with keys", "storage.backend=s3,storage.s3.bucket=b,storage.s3.region=r,cloudIdentity.provider=aws,cloudIdentity.aws.roleArn=arn:aws:iam::123456789012:role/x,credentials.s3.accessKey=a,credentials.s3.secretKey=b", []string{"cloudIdentity.provider", "credentials"}},
		{"half an S3 key pair", "storage.backend=s3,storage.s3.bucket=b,storage.s3.region=r,credentials.s3.accessKey=a", []string{"accessKey and secretKey"}},
		{"htpasswd without users", "auth.htpasswd.enabled=true", []string{"auth.htpasswd.users"}},
		{"tls without a secret", "tls.enabled=true", []string{"tls.secretName"}},
		{"ingress without hosts", "ingress.enabled=true", []string{"/ingress/hosts"}},
		{"unknown ingress preset", "ingress.preset=envoy", []string{"/ingress/preset"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := template(t, helm, "--set", tc.set)
			if err == nil {
				t.Fatalf("helm template --set %s succeeded; want a failure naming %q\n%s", tc.set, tc.want, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not name %q:\n%v", w, err)
				}
			}
		})
	}
}

// render is template that fails the test on error and parses the objects.
func render(t *testing.T, helm string, args ...string) []object {
	t.Helper()
	out, err := template(t, helm, args...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return parseObjects(t, out)
}

// container returns the registryd container of the Deployment.
func container(t *testing.T, objs []object) any {
	t.Helper()
	return get(find(t, objs, "Deployment", "r-registryd"), "spec", "template", "spec", "containers", 0)
}

// envNames lists the container's environment: name -> "secret/key" or the literal value.
func envNames(c any) map[string]string {
	out := map[string]string{}
	list, _ := get(c, "env").([]any)
	for _, e := range list {
		if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
			out[str(e, "name")] = str(ref, "name") + "/" + str(ref, "key")
		} else {
			out[str(e, "name")] = str(e, "value")
		}
	}
	return out
}

// TestChartRendering checks what the examples render: booleans kept when false, no secret in
// the ConfigMap, the cloud identities, the split metrics Service, the ingress presets, the
// pod hardening, the shutdown timing, and checksums that follow the config.
func TestChartRendering(t *testing.T) {
	helm := needTools(t, "helm")[0]
	ex := examples(t)

	t.Run("minio: false booleans, keys only in the Secret", func(t *testing.T) {
		objs := render(t, helm, "-f", ex["minio"])
		cfg := str(find(t, objs, "ConfigMap", "r-registryd"), "data", "config.yml")
		for _, want := range []string{"secure: false", "forcepathstyle: true", "encrypt: false", "skipverify: false", "regionendpoint: http://minio.minio.svc:9000", "enabled: false"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("config.yml lacks %q:\n%s", want, cfg)
			}
		}
		for _, secret := range []string{"registryd-secret-key", "a-shared-http-secret", "accesskey", "secretkey"} {
			if strings.Contains(cfg, secret) {
				t.Errorf("config.yml holds %q:\n%s", secret, cfg)
			}
		}
		env := envNames(container(t, objs))
		for k, want := range map[string]string{
			"REGISTRY_HTTP_SECRET":          "r-registryd/http-secret",
			"REGISTRY_STORAGE_S3_ACCESSKEY": "r-registryd/s3-accesskey",
			"REGISTRY_STORAGE_S3_SECRETKEY": "r-registryd/s3-secretkey",
		} {
			if env[k] != want {
				t.Errorf("env %s = %q, want from Secret %q", k, env[k], want)
			}
		}
		if s := find(t, objs, "Secret", "r-registryd"); get(s, "data", "s3-secretkey") == nil {
			t.Errorf("the chart's Secret lacks s3-secretkey: %v", s)
		}
		if v := str(find(t, objs, "Ingress", "r-registryd"), "metadata", "annotations", "traefik.ingress.kubernetes.io/router.entrypoints"); v != "websecure" {
			t.Errorf("traefik preset: entrypoints = %q", v)
		}
	})

	t.Run("cloud identities", func(t *testing.T) {
		for _, tc := range []struct {
			example, annotation, value string
			podLabel                   bool
		}{
			{"s3-irsa", "eks.amazonaws.com/role-arn", "arn:aws:iam::123456789012:role/registryd", false},
			{"gcs-workload-identity", "iam.gke.io/gcp-service-account", "registryd@my-project.iam.gserviceaccount.com", false},
			{"azure-workload-identity", "azure.workload.identity/client-id", "00000000-0000-0000-0000-000000000000", true},
		} {
			objs := render(t, helm, "-f", ex[tc.example])
			sa := find(t, objs, "ServiceAccount", "r-registryd")
			if got := str(sa, "metadata", "annotations", tc.annotation); got != tc.value {
				t.Errorf("%s: ServiceAccount annotation %s = %q, want %q", tc.example, tc.annotation, got, tc.value)
			}
			pod := get(find(t, objs, "Deployment", "r-registryd"), "spec", "template")
			if got := str(pod, "metadata", "labels", "azure.workload.identity/use"); (got == "true") != tc.podLabel {
				t.Errorf("%s: pod label azure.workload.identity/use = %q", tc.example, got)
			}
			if get(pod, "spec", "automountServiceAccountToken") != true {
				t.Errorf("%s: the cloud identity needs the ServiceAccount token mounted", tc.example)
			}
			if str(pod, "spec", "serviceAccountName") != "r-registryd" {
				t.Errorf("%s: serviceAccountName = %q", tc.example, str(pod, "spec", "serviceAccountName"))
			}
			cfg := str(find(t, objs, "ConfigMap", "r-registryd"), "data", "config.yml")
			for _, key := range []string{"accesskey", "secretkey", "accountkey", "credentials", "keyfile"} {
				if strings.Contains(cfg, key) {
					t.Errorf("%s: key-less config holds %q:\n%s", tc.example, key, cfg)
				}
			}
			for name := range envNames(container(t, objs)) {
				if name != "REGISTRY_HTTP_SECRET" {
					t.Errorf("%s: key-less pod gets %s", tc.example, name)
				}
			}
			if !has(objs, "PodDisruptionBudget") || get(pod, "spec", "topologySpreadConstraints") == nil {
				t.Errorf("%s: more than one replica without a PodDisruptionBudget or zone spread", tc.example)
			}
			if str(get(pod, "spec", "topologySpreadConstraints", 0), "topologyKey") != "topology.kubernetes.io/zone" {
				t.Errorf("%s: the first spread is not across zones", tc.example)
			}
		}
	})

	t.Run("the helm test pod under auth and mutual TLS", func(t *testing.T) {
		token := []string{"--set", "auth.token.enabled=true", "--set", "auth.token.realm=https://auth.example.com/token",
			"--set", "auth.token.service=registry", "--set", "auth.token.issuer=issuer", "--set", "auth.token.existingSecret=issuer"}
		mtls := []string{"--set", "tls.enabled=true", "--set", "tls.secretName=tls", "--set", "tls.clientCASecret=clientca"}
		users := []string{"--set", "auth.htpasswd.enabled=true", "--set", "auth.htpasswd.users[0].username=ci", "--set", "auth.htpasswd.users[0].password=pw"}
		for _, tc := range []struct {
			name     string
			args     []string
			wantPod  bool
			wantCred string // secret/key of the username, "" for none
			wantCert bool
		}{
			{"no auth", nil, true, "", false},
			{"htpasswd users", users, true, "r-registryd-test/username", false},
			{"htpasswd users, own credentials", append(users, "--set", "tests.credentialsSecret=mine"), true, "mine/username", false},
			{"token without credentials", token, false, "", false},
			{"token with credentials", append(token, "--set", "tests.credentialsSecret=mine"), true, "mine/username", false},
			{"mutual TLS without a client certificate", mtls, false, "", false},
			{"mutual TLS with a client certificate", append(mtls, "--set", "tests.clientCertSecret=client"), true, "", true},
		} {
			objs := render(t, helm, append([]string{"--set", "auth.htpasswd.realm=r"}, tc.args...)...)
			if has(objs, "Pod") != tc.wantPod {
				t.Errorf("%s: test pod rendered = %v, want %v", tc.name, has(objs, "Pod"), tc.wantPod)
				continue
			}
			if !tc.wantPod {
				continue
			}
			c := get(find(t, objs, "Pod", "r-registryd-test"), "spec", "containers", 0)
			if got := envNames(c)["REGISTRYD_SELFTEST_USERNAME"]; got != tc.wantCred {
				t.Errorf("%s: username from %q, want %q", tc.name, got, tc.wantCred)
			}
			args := strings.Join(toStrings(get(c, "args")), " ")
			if strings.Contains(args, "-cert=") != tc.wantCert || (get(c, "volumeMounts") != nil) != tc.wantCert {
				t.Errorf("%s: args %q, mounts %v; want a client certificate: %v", tc.name, args, get(c, "volumeMounts"), tc.wantCert)
			}
		}
	})

	t.Run("filesystem: hardening, probes, metrics apart, shutdown timing", func(t *testing.T) {
		objs := render(t, helm, "-f", ex["filesystem"])
		dep := find(t, objs, "Deployment", "r-registryd")
		pod := get(dep, "spec", "template", "spec")
		c := container(t, objs)
		for _, check := range []struct {
			what string
			got  any
			want any
		}{
			{"runAsNonRoot", get(pod, "securityContext", "runAsNonRoot"), true},
			{"seccomp", get(pod, "securityContext", "seccompProfile", "type"), "RuntimeDefault"},
			{"readOnlyRootFilesystem", get(c, "securityContext", "readOnlyRootFilesystem"), true},
			{"allowPrivilegeEscalation", get(c, "securityContext", "allowPrivilegeEscalation"), false},
			{"capabilities dropped", get(c, "securityContext", "capabilities", "drop", 0), "ALL"},
			{"no token without a cloud identity", get(pod, "automountServiceAccountToken"), false},
			{"startup probe path", get(c, "startupProbe", "httpGet", "path"), "/healthz"},
			{"liveness probe path", get(c, "livenessProbe", "httpGet", "path"), "/healthz"},
			{"readiness probe path", get(c, "readinessProbe", "httpGet", "path"), "/readyz"},
			{"probes on the metrics port", get(c, "readinessProbe", "httpGet", "port"), "metrics"},
			{"RWO volume: Recreate", get(dep, "spec", "strategy", "type"), "Recreate"},
			{"preStop pause", strings.Join(toStrings(get(c, "lifecycle", "preStop", "exec", "command")), " "), "/registryd sleep 5s"},
		} {
			if fmt.Sprint(check.got) != fmt.Sprint(check.want) {
				t.Errorf("%s = %v, want %v", check.what, check.got, check.want)
			}
		}
		var tmp bool
		for _, m := range get(c, "volumeMounts").([]any) {
			tmp = tmp || str(m, "mountPath") == "/tmp"
		}
		if !tmp {
			t.Error("no writable /tmp")
		}
		svc := find(t, objs, "Service", "r-registryd")
		for _, p := range get(svc, "spec", "ports").([]any) {
			if str(p, "targetPort") == "metrics" || fmt.Sprint(get(p, "port")) == "5001" {
				t.Errorf("the public Service exposes the metrics port: %v", p)
			}
		}
		if ms := find(t, objs, "Service", "r-registryd-metrics"); str(get(ms, "spec", "ports", 0), "targetPort") != "metrics" {
			t.Errorf("metrics Service: %v", ms)
		}
		if has(objs, "PodDisruptionBudget") || has(objs, "HorizontalPodAutoscaler") || get(pod, "topologySpreadConstraints") != nil {
			t.Error("one replica: PDB, HPA or spread rendered")
		}
		ann := get(find(t, objs, "Ingress", "r-registryd"), "metadata", "annotations")
		for k, want := range map[string]string{
			"nginx.ingress.kubernetes.io/proxy-body-size":         "0",
			"nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
			"nginx.ingress.kubernetes.io/proxy-read-timeout":      "900",
			"nginx.ingress.kubernetes.io/proxy-send-timeout":      "900",
		} {
			if got := str(ann, k); got != want {
				t.Errorf("ingress-nginx preset %s = %q, want %q", k, got, want)
			}
		}
		cfg := str(find(t, objs, "ConfigMap", "r-registryd"), "data", "config.yml")
		for _, want := range []string{"draintimeout: 60s", "draindelay: 5s", "addr: :5001", "path: /etc/registryd/auth/htpasswd", "host: https://registry.example.com"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("config.yml lacks %q:\n%s", want, cfg)
			}
		}
		if grace := get(pod, "terminationGracePeriodSeconds"); fmt.Sprint(grace) != "90" {
			t.Errorf("terminationGracePeriodSeconds = %v, want 90 (> 5 preStop + 5 drain delay + 60 drain)", grace)
		}
		sec := find(t, objs, "Secret", "r-registryd")
		if get(sec, "data", "htpasswd") == nil || get(sec, "data", "http-secret") == nil {
			t.Errorf("the chart's Secret lacks htpasswd or http-secret: %v", get(sec, "data"))
		}
	})

	t.Run("haproxy preset and raw config passthrough", func(t *testing.T) {
		objs := render(t, helm, "-f", ex["azure-workload-identity"], "--set", "config.limits.maxmanifestbytes=1048576,config.log.level=debug")
		if got := str(find(t, objs, "Ingress", "r-registryd"), "metadata", "annotations", "haproxy.org/timeout-server"); got != "900s" {
			t.Errorf("haproxy preset timeout-server = %q", got)
		}
		cfg := str(find(t, objs, "ConfigMap", "r-registryd"), "data", "config.yml")
		for _, want := range []string{"maxmanifestbytes: 1048576", "level: debug", "accountname: myregistryaccount"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("config.yml lacks %q:\n%s", want, cfg)
			}
		}
	})

	t.Run("CRD objects: ServiceMonitor on the metrics Service, HTTPRoute without a request timeout", func(t *testing.T) {
		objs := render(t, helm, "-f", ex["gcs-workload-identity"], "--set", "metrics.serviceMonitor.enabled=true")
		sm := find(t, objs, "ServiceMonitor", "r-registryd")
		if str(sm, "spec", "endpoints", 0, "port") != "metrics" || str(sm, "spec", "selector", "matchLabels", "app.kubernetes.io/component") != "metrics" {
			t.Errorf("ServiceMonitor: %v", sm)
		}
		hr := find(t, objs, "HTTPRoute", "r-registryd")
		if str(hr, "spec", "rules", 0, "timeouts", "request") != "0s" || str(hr, "spec", "parentRefs", 0, "name") != "external" {
			t.Errorf("HTTPRoute: %v", hr)
		}
		if get(find(t, objs, "Deployment", "r-registryd"), "spec", "replicas") != nil || !has(objs, "HorizontalPodAutoscaler") {
			t.Error("autoscaling: the Deployment pins replicas or there is no HPA")
		}
	})

	t.Run("a ReadWriteMany volume scales with a rolling update", func(t *testing.T) {
		objs := render(t, helm, "--set", "replicaCount=3,httpSecret.value=0123456789abcdef0123,storage.filesystem.persistence.accessMode=ReadWriteMany")
		dep := find(t, objs, "Deployment", "r-registryd")
		if str(dep, "spec", "strategy", "type") != "RollingUpdate" || fmt.Sprint(get(dep, "spec", "strategy", "rollingUpdate", "maxUnavailable")) != "0" {
			t.Errorf("strategy: %v", get(dep, "spec", "strategy"))
		}
		if mode := str(find(t, objs, "PersistentVolumeClaim", "r-registryd"), "spec", "accessModes", 0); mode != "ReadWriteMany" {
			t.Errorf("PVC access mode %q", mode)
		}
		if !has(objs, "PodDisruptionBudget") {
			t.Error("3 replicas without a PodDisruptionBudget")
		}
	})

	t.Run("checksums follow the config and the chart's Secret", func(t *testing.T) {
		sum := func(args ...string) (string, string) {
			pod := get(find(t, render(t, helm, args...), "Deployment", "r-registryd"), "spec", "template", "metadata", "annotations")
			return str(pod, "checksum/config"), str(pod, "checksum/secret")
		}
		c1, s1 := sum("-f", ex["minio"])
		c2, s2 := sum("-f", ex["minio"])
		c3, s3 := sum("-f", ex["minio"], "--set", "log.level=debug")
		_, s4 := sum("-f", ex["minio"], "--set", "credentials.s3.secretKey=rotated-secret-key")
		if c1 == "" || c1 != c2 || s1 != s2 {
			t.Errorf("the same values give different checksums: %s/%s vs %s/%s", c1, s1, c2, s2)
		}
		if c3 == c1 || s3 != s1 {
			t.Errorf("a config change: checksum/config %s -> %s, checksum/secret %s -> %s", c1, c3, s1, s3)
		}
		if s4 == s1 {
			t.Error("a rotated key does not change checksum/secret")
		}
	})
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, len(l))
	for i, e := range l {
		out[i] = fmt.Sprint(e)
	}
	return out
}
