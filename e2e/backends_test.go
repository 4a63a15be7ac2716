package e2e

import (
	"fmt"
	"testing"

	"github.com/registryd/registryd/internal/testenv"
)

// backends lists every storage backend the end-to-end tests run on. The cloud backends
// start their emulator (a fresh one per call) and a fresh bucket or container.
func backends() []backend {
	return []backend{
		{"filesystem", filesystemBackend, false},
		{"inmemory", inmemoryBackend, false},
		{"azure", azureBackend, true},
	}
}

func azureBackend(t *testing.T) string {
	a := testenv.StartAzurite(t)
	return fmt.Sprintf("  azure:\n    accountname: %s\n    accountkey: %q\n    container: %s\n    serviceurl: %s\n",
		a.Account, a.Key, a.NewContainer(t), a.ServiceURL)
}
