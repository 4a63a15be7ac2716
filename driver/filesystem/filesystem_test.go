package filesystem_test

import (
	"testing"

	"github.com/registryd/registryd/config"
	"github.com/registryd/registryd/driver/filesystem"
	"github.com/registryd/registryd/driver/testsuite"
)

func TestConformance(t *testing.T) {
	d, err := filesystem.New(config.Filesystem{RootDirectory: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	testsuite.Run(t, testsuite.Harness{Driver: d})
}
