package inmemory_test

import (
	"testing"

	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/driver/testsuite"
)

func TestConformance(t *testing.T) {
	testsuite.Run(t, testsuite.Harness{Driver: inmemory.New()})
}
