// Command k8s-schemas writes kubeconform's per-kind JSON schemas from a Kubernetes OpenAPI v2
// document: k8s-schemas SWAGGER.json OUTDIR. scripts/install-tools.sh runs it.
package main

import (
	"fmt"
	"os"

	"github.com/registryd/registryd/internal/k8sschemas"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: k8s-schemas SWAGGER.json OUTDIR")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-schemas:", err)
		os.Exit(1)
	}
	n, err := k8sschemas.Convert(data, os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s-schemas:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "k8s-schemas: wrote %d schemas to %s\n", n, os.Args[2])
}
