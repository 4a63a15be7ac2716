// Package k8sschemas converts a Kubernetes OpenAPI v2 (swagger) document into the per-kind JSON
// schema files that kubeconform reads with the location template
// "{{ .ResourceKind }}{{ .KindSuffix }}.json": deployment-apps-v1.json, service-v1.json,
// ingress-networking-v1.json. It exists so that the chart tests validate rendered manifests
// offline, from the OpenAPI document that k8s.io/kube-openapi ships as test data.
//
// Each file holds the kind's schema and, under "definitions", every definition it reaches, so
// the document's "#/definitions/..." references resolve inside the file. Objects with declared
// properties refuse unknown ones (additionalProperties: false, as kubeconform -strict expects),
// and the two string types that also take numbers in YAML (IntOrString, Quantity) accept both.
package k8sschemas

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const refPrefix = "#/definitions/"

// swagger is the part of an OpenAPI v2 document the conversion reads.
type swagger struct {
	Definitions map[string]map[string]any `json:"definitions"`
}

// gvk is one entry of a definition's x-kubernetes-group-version-kind.
type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// FileName is kubeconform's file name for a kind in an API version ("apps/v1", "v1",
// "networking.k8s.io/v1"): the lower-cased kind, then "-" and the first label of the group when
// there is a group, then "-" and the version.
func FileName(kind, group, version string) string {
	suffix := ""
	if group != "" {
		suffix = "-" + strings.ToLower(strings.Split(group, ".")[0])
	}
	return strings.ToLower(kind) + suffix + "-" + strings.ToLower(version) + ".json"
}

// Convert reads the swagger document in data and writes one schema file per kind into dir
// (created if needed). It returns the number of files written.
func Convert(data []byte, dir string) (int, error) {
	var doc swagger
	if err := json.Unmarshal(data, &doc); err != nil {
		return 0, fmt.Errorf("k8sschemas: parse OpenAPI document: %w", err)
	}
	if len(doc.Definitions) == 0 {
		return 0, fmt.Errorf("k8sschemas: the OpenAPI document has no definitions")
	}
	for name, def := range doc.Definitions {
		doc.Definitions[name] = fix(name, def)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("k8sschemas: %w", err)
	}
	names := make([]string, 0, len(doc.Definitions))
	for name := range doc.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	n := 0
	for _, name := range names {
		def := doc.Definitions[name]
		kinds, err := groupVersionKinds(def)
		if err != nil {
			return n, fmt.Errorf("k8sschemas: %s: %w", name, err)
		}
		if len(kinds) == 0 {
			continue
		}
		out := make(map[string]any, len(def)+1)
		for k, v := range def {
			out[k] = v
		}
		reached := map[string]any{}
		collect(def, doc.Definitions, reached)
		out["definitions"] = reached
		b, err := json.Marshal(out)
		if err != nil {
			return n, fmt.Errorf("k8sschemas: %s: %w", name, err)
		}
		for _, k := range kinds {
			if err := os.WriteFile(filepath.Join(dir, FileName(k.Kind, k.Group, k.Version)), b, 0o644); err != nil {
				return n, fmt.Errorf("k8sschemas: %w", err)
			}
			n++
		}
	}
	return n, nil
}

func groupVersionKinds(def map[string]any) ([]gvk, error) {
	raw, ok := def["x-kubernetes-group-version-kind"]
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var kinds []gvk
	if err := json.Unmarshal(b, &kinds); err != nil {
		return nil, fmt.Errorf("x-kubernetes-group-version-kind: %w", err)
	}
	return kinds, nil
}

// fix rewrites one definition for validation of YAML input.
func fix(name string, def map[string]any) map[string]any {
	switch {
	case strings.HasSuffix(name, ".util.intstr.IntOrString"):
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	case strings.HasSuffix(name, ".api.resource.Quantity"):
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	}
	strict(def)
	return def
}

// strict sets additionalProperties: false on every object schema with declared properties.
func strict(v any) {
	switch s := v.(type) {
	case map[string]any:
		if props, ok := s["properties"].(map[string]any); ok && len(props) > 0 {
			if _, set := s["additionalProperties"]; !set {
				s["additionalProperties"] = false
			}
		}
		for _, child := range s {
			strict(child)
		}
	case []any:
		for _, child := range s {
			strict(child)
		}
	}
}

// collect adds to reached every definition that v refers to, transitively.
func collect(v any, defs map[string]map[string]any, reached map[string]any) {
	switch s := v.(type) {
	case map[string]any:
		if ref, ok := s["$ref"].(string); ok && strings.HasPrefix(ref, refPrefix) {
			name := strings.TrimPrefix(ref, refPrefix)
			if _, seen := reached[name]; !seen {
				if def, ok := defs[name]; ok {
					reached[name] = def
					collect(def, defs, reached)
				}
			}
		}
		for _, child := range s {
			collect(child, defs, reached)
		}
	case []any:
		for _, child := range s {
			collect(child, defs, reached)
		}
	}
}
