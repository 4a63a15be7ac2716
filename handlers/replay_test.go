package handlers_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestLostPatchResponse: the response to an acknowledged PATCH is lost and the client
// comes back with the Location it held before. A table of such calls: each answers as
// the upload's true state (record wins) dictates, and following the answer's Location and
// Range completes the upload with the right digest; a forged or other-repository token
// stays 404.
func TestLostPatchResponse(t *testing.T) {
	blob := bytes.Repeat([]byte("0123456789abcdefghij"), 150) // 3000 bytes
	for i := range blob {
		blob[i] ^= byte(i * 7)
	}
	const a, b = 1000, 2200 // the lost PATCH sent [a,b)
	d := digest.FromBytes(blob)
	cr := func(from, to int) map[string]string {
		return map[string]string{"Content-Range": fmt.Sprintf("%d-%d", from, to-1)}
	}
	tamper := func(loc string) string {
		u, _ := url.Parse(loc)
		raw, _ := base64.RawURLEncoding.DecodeString(u.Query().Get("_state"))
		raw[len(raw)/3] ^= 1
		u.RawQuery = url.Values{"_state": {base64.RawURLEncoding.EncodeToString(raw)}}.Encode()
		return u.String()
	}
	for _, tc := range []struct {
		name      string
		method    string
		loc       func(l locs) string // the Location the client uses
		suffix    string
		hdr       map[string]string
		body      []byte
		want      int
		wantCode  string
		wantRange string // "" for a response without one
	}{
		{"PATCH repeated", "PATCH", first, "", cr(a, b), blob[a:b], 202, "", "0-2199"},
		{"PATCH repeated with more", "PATCH", first, "", cr(a, 2600), blob[a:2600], 202, "", "0-2599"},
		{"PATCH streamed, repeated", "PATCH", first, "", nil, blob[a:b], 202, "", "0-2199"},
		{"PATCH from the start", "PATCH", start, "", cr(0, b), blob[:b], 202, "", "0-2199"},
		{"PATCH at the true offset", "PATCH", first, "", cr(b, 2600), blob[b:2600], 202, "", "0-2599"},
		{"PATCH with other bytes", "PATCH", first, "", cr(a, b), bytes.Repeat([]byte("x"), b-a), 416, "BLOB_UPLOAD_INVALID", "0-2199"},
		{"PATCH at another offset", "PATCH", first, "", cr(a+5, b), blob[a+5 : b], 416, "BLOB_UPLOAD_INVALID", "0-2199"},
		{"status GET", "GET", first, "", nil, nil, 204, "", "0-2199"},
		{"status GET from the start", "GET", start, "", nil, nil, 204, "", "0-2199"},
		{"status GET, current token", "GET", current, "", nil, nil, 204, "", "0-2199"},
		{"PUT without a body", "PUT", first, "&digest=" + d.String(), nil, nil, 416, "BLOB_UPLOAD_INVALID", "0-2199"},
		{"PUT repeated with the rest", "PUT", first, "&digest=" + d.String(), cr(a, len(blob)), blob[a:], 201, "", ""},
		{"other repository", "PATCH", func(l locs) string { return strings.Replace(l.first, "/v2/up/", "/v2/other/", 1) },
			"", cr(a, b), blob[a:b], 404, "BLOB_UPLOAD_UNKNOWN", ""},
		{"tampered", "PATCH", func(l locs) string { return tamper(l.first) }, "", cr(a, b), blob[a:b], 404, "BLOB_UPLOAD_UNKNOWN", ""},
		{"tampered status", "GET", func(l locs) string { return tamper(l.first) }, "", nil, nil, 404, "BLOB_UPLOAD_UNKNOWN", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, true)
			resp := s.do(t, "POST", "/v2/up/blobs/uploads/", nil, nil)
			resp.Body.Close()
			loc0 := resp.Header.Get("Location")
			resp = s.do(t, "PATCH", loc0, cr(0, a), blob[:a])
			resp.Body.Close()
			loc1 := resp.Header.Get("Location")
			resp = s.do(t, "PATCH", loc1, cr(a, b), blob[a:b]) // its response is lost
			resp.Body.Close()
			if resp.StatusCode != 202 {
				t.Fatalf("setup: %d", resp.StatusCode)
			}
			loc2 := resp.Header.Get("Location")
			resp = s.do(t, tc.method, tc.loc(locs{loc0, loc1, loc2})+tc.suffix, tc.hdr, tc.body)
			code := ""
			if resp.StatusCode >= 400 {
				code = ociCode(t, resp)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want || code != tc.wantCode || resp.Header.Get("Range") != tc.wantRange {
				t.Fatalf("%d %s Range %q, want %d %s %q", resp.StatusCode, code, resp.Header.Get("Range"), tc.want, tc.wantCode, tc.wantRange)
			}
			if tc.want == 404 {
				// The real upload is undisturbed.
				resp = s.do(t, "GET", loc2, nil, nil)
				resp.Body.Close()
				if resp.StatusCode != 204 || resp.Header.Get("Range") != "0-2199" {
					t.Fatalf("upload after a forged request: %d %q", resp.StatusCode, resp.Header.Get("Range"))
				}
				return
			}
			if tc.want != 201 {
				// Follow the answer: its Location continues from its Range.
				loc := resp.Header.Get("Location")
				end, err := strconv.Atoi(strings.TrimPrefix(tc.wantRange, "0-"))
				if err != nil || loc == "" {
					t.Fatalf("no Location or Range to continue from: %q %q", loc, tc.wantRange)
				}
				resp = s.do(t, "PUT", loc+"&digest="+d.String(), cr(end+1, len(blob)), blob[end+1:])
				resp.Body.Close()
				if resp.StatusCode != 201 {
					t.Fatalf("PUT following the answer: %d", resp.StatusCode)
				}
			}
			resp = s.do(t, "GET", "/v2/up/blobs/"+d.String(), nil, nil)
			var got bytes.Buffer
			_, _ = got.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !bytes.Equal(got.Bytes(), blob) {
				t.Fatalf("blob after the replay: %d, %d bytes", resp.StatusCode, got.Len())
			}
		})
	}
}

// locs are the Locations a client of the upload was given: by the POST, by the PATCH
// before the lost one, and in the lost response (what a client that did get it holds).
type locs struct{ start, first, current string }

func start(l locs) string   { return l.start }
func first(l locs) string   { return l.first }
func current(l locs) string { return l.current }
