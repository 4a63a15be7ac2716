package handlers_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/registryd/registryd/driver/inmemory"
	"github.com/registryd/registryd/handlers"
	"github.com/registryd/registryd/storage"
)

// TestNoAccessLog: with NoAccessLog (log.accesslog.disabled) a request answered below
// 500 logs no line; without it every request logs one.
func TestNoAccessLog(t *testing.T) {
	for _, disabled := range []bool{false, true} {
		reg, err := storage.New(inmemory.New(), storage.Options{Secret: []byte("accesslog-test-secret-0123")})
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		e, err := handlers.New(handlers.Options{Registry: reg, Logger: slog.New(slog.NewJSONHandler(&logs, nil)), NoAccessLog: disabled})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"/v2/", "/v2/app/manifests/missing"} {
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
			if rec.Code >= 500 {
				t.Fatalf("GET %s: %d", p, rec.Code)
			}
		}
		if got := strings.Count(logs.String(), `"msg":"request"`); (got == 0) != disabled || (!disabled && got != 2) {
			t.Errorf("NoAccessLog %v: %d request lines:\n%s", disabled, got, logs.String())
		}
	}
}
