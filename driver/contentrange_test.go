package driver_test

import (
	"testing"

	"github.com/registryd/registryd/driver"
)

func TestContentRangeSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"bytes 0-99/1234", 1234},
		{"bytes 5-5/6", 6},
		{"bytes */1234", 1234},
		{"bytes 0-0/0", 0},
		{"bytes 0-99/*", -1},
		{"bytes 0-99/ 77", 77},
		{"bytes 0-99/-5", -1},
		{"bytes 0-99/12x", -1},
		{"bytes 0-99", -1},
		{"", -1},
	} {
		if got := driver.ContentRangeSize(tc.in); got != tc.want {
			t.Errorf("ContentRangeSize(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
