package k8sschemas

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestFileName(t *testing.T) {
	for _, tc := range []struct{ kind, group, version, want string }{
		{"Deployment", "apps", "v1", "deployment-apps-v1.json"},
		{"Service", "", "v1", "service-v1.json"},
		{"Ingress", "networking.k8s.io", "v1", "ingress-networking-v1.json"},
		{"HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscaler-autoscaling-v2.json"},
	} {
		if got := FileName(tc.kind, tc.group, tc.version); got != tc.want {
			t.Errorf("FileName(%q, %q, %q) = %q, want %q", tc.kind, tc.group, tc.version, got, tc.want)
		}
	}
}

func TestConvert(t *testing.T) {
	doc := `{"definitions": {
	  "io.k8s.api.core.v1.Thing": {"type": "object", "properties": {"port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"}, "spec": {"$ref": "#/definitions/io.k8s.api.core.v1.Spec"}},
	    "x-kubernetes-group-version-kind": [{"group": "", "kind": "Thing", "version": "v1"}]},
	  "io.k8s.api.core.v1.Spec": {"type": "object", "properties": {"a": {"type": "string"}}},
	  "io.k8s.api.core.v1.Unused": {"type": "object", "properties": {"b": {"type": "string"}}},
	  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"}
	}}`
	dir := t.TempDir()
	n, err := Convert([]byte(doc), dir)
	if err != nil || n != 1 {
		t.Fatalf("Convert = %d, %v; want 1 file", n, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "thing-v1.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		AdditionalProperties *bool                     `json:"additionalProperties"`
		Definitions          map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.AdditionalProperties == nil || *got.AdditionalProperties {
		t.Errorf("additionalProperties = %v, want false", got.AdditionalProperties)
	}
	if len(got.Definitions) != 2 {
		t.Errorf("definitions = %d, want the 2 reached (Spec, IntOrString)", len(got.Definitions))
	}
	if _, ok := got.Definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["oneOf"]; !ok {
		t.Errorf("IntOrString = %v, want a oneOf of string and integer", got.Definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"])
	}
	if _, err := Convert([]byte(`{}`), dir); err == nil {
		t.Error("Convert of a document without definitions succeeded")
	}
}
