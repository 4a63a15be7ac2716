package httpstatus

import (
	"errors"
	"testing"

	"github.com/registryd/registryd/driver"
)

func TestClass(t *testing.T) {
	for _, c := range []struct {
		status int
		want   error
		retry  bool
	}{
		{400, driver.ErrMisconfigured, false},
		{401, driver.ErrPermission, false},
		{403, driver.ErrPermission, false},
		{404, driver.ErrMisconfigured, false},
		{405, driver.ErrMisconfigured, false},
		{408, driver.ErrUnavailable, true},
		{409, driver.ErrMisconfigured, false},
		{411, driver.ErrMisconfigured, false},
		{412, driver.ErrPreconditionFailed, false},
		{416, driver.ErrPreconditionFailed, false},
		{418, driver.ErrMisconfigured, false},
		{429, driver.ErrThrottled, true},
		{500, driver.ErrUnavailable, true},
		{502, driver.ErrUnavailable, true},
		{503, driver.ErrUnavailable, true},
		{0, driver.ErrUnavailable, true},
		{301, driver.ErrUnavailable, true},
	} {
		got := Class(c.status)
		if !errors.Is(got, c.want) || driver.Retryable(got) != c.retry {
			t.Errorf("Class(%d) = %v (retryable %v), want %v (retryable %v)", c.status, got, driver.Retryable(got), c.want, c.retry)
		}
	}
}
