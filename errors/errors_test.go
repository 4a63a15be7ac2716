package errors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestToHTTP(t *testing.T) {
	secret := errors.New("dial tcp 10.0.0.1:443: connection refused (key AKIA123)")
	for _, tc := range []struct {
		name     string
		err      error
		status   int
		code     string
		internal bool
	}{
		{"blob unknown", BlobUnknown.WithDetail(map[string]string{"digest": "sha256:x"}), 404, "BLOB_UNKNOWN", false},
		{"wrapped", fmt.Errorf("ctx: %w", ManifestUnknown.WithDetail(nil).WithCause(secret)), 404, "MANIFEST_UNKNOWN", false},
		{"range", New(BlobUploadOutOfOrder).WithHeader("Range", "0-9"), 416, "BLOB_UPLOAD_INVALID", false},
		{"too large", New(ManifestTooLarge), 413, "SIZE_INVALID", false},
		{"unsupported", New(Unsupported), 405, "UNSUPPORTED", false},
		{"backend failure", fmt.Errorf("stat: %w", secret), 500, "UNKNOWN", true},
		{"cancelled", context.Canceled, 500, "UNKNOWN", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body, internal := ToHTTP(tc.err)
			if status != tc.status || internal != tc.internal {
				t.Errorf("status %d internal %v, want %d %v", status, internal, tc.status, tc.internal)
			}
			var env Envelope
			if err := json.Unmarshal(body, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Code != tc.code {
				t.Errorf("body %s, want code %s", body, tc.code)
			}
			if strings.Contains(string(body), "AKIA") || strings.Contains(string(body), "10.0.0.1") {
				t.Errorf("body leaks the cause: %s", body)
			}
		})
	}
	_, h, _, _ := ToHTTP(New(BlobUploadOutOfOrder).WithHeader("Range", "0-9"))
	if h.Get("Range") != "0-9" {
		t.Errorf("headers not carried: %v", h)
	}
	if !errors.Is(fmt.Errorf("x: %w", BlobUnknown.WithDetail(1)), New(BlobUnknown)) || Of(secret, BlobUnknown) {
		t.Error("errors.Is / Of misbehave")
	}
	if New(Unknown).StatusCode() != http.StatusInternalServerError {
		t.Error("StatusCode")
	}
}
