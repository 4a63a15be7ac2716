package storage

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	regerr "github.com/registryd/registryd/errors"
)

// Upload is the state of a resumable blob upload. It travels between requests in a signed
// token (see Token and ParseUpload), so any replica sharing the backend and the secret can
// continue it; only what does not fit (the bytes) lives in the backend.
type Upload struct {
	// Repo is the repository the upload belongs to (bound into the signature, not stored).
	Repo string
	// Owner is the opaque identity of the caller that started the upload ("" when
	// anonymous or when access control is off). Like Repo it is bound into the signature,
	// not stored: a token issued to one owner does not parse for another.
	Owner string
	// ID is the upload's id (Docker-Upload-UUID).
	ID string
	// Offset is the number of bytes acknowledged so far.
	Offset int64
	// Started is when the upload began.
	Started time.Time

	hash  []byte // marshaled sha256 state of bytes [0, Offset)
	state []byte // driver Writer state
}

const tokenVersion = 1

// newUploadID returns a random RFC 4122 version 4 UUID string.
func newUploadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func validUploadID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i, c := range id {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// Token returns the signed, URL-safe state token for u.
func (r *Registry) Token(u *Upload) string {
	b := []byte{tokenVersion}
	b = appendBytes(b, []byte(u.ID))
	b = binary.AppendVarint(b, u.Offset)
	b = binary.AppendVarint(b, u.Started.Unix())
	b = appendBytes(b, u.hash)
	b = appendBytes(b, u.state)
	b = append(b, r.sign(u.Repo, u.Owner, b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// sign MACs payload bound to repo and owner. An empty owner adds nothing, so tokens of
// anonymous uploads are those of registryd versions without access control. A repository
// name contains no NUL, the owner enters as a fixed-size hash after a marker, and payload
// starts with the version byte, so the encoding is unambiguous whatever the owner holds.
func (r *Registry) sign(repo, owner string, payload []byte) []byte {
	m := hmac.New(sha256.New, r.opts.Secret)
	m.Write([]byte("registryd-upload\x00"))
	m.Write([]byte(repo))
	m.Write([]byte{0})
	if owner != "" {
		m.Write([]byte("owner\x00"))
		sum := sha256.Sum256([]byte(owner))
		m.Write(sum[:])
	}
	m.Write(payload)
	return m.Sum(nil)
}

var errBadToken = errors.New("malformed upload token")

// ParseUpload verifies token for repository repo, the caller's identity owner (as set in
// Upload.Owner when the upload started) and upload id (from the URL path) and returns the
// upload it describes. A token that is malformed, forged, tampered with, signed for
// another repository, owner or id, or expired yields BLOB_UPLOAD_UNKNOWN.
func (r *Registry) ParseUpload(repo, owner, id, token string) (*Upload, error) {
	unknown := func(why string) error {
		return regerr.BlobUploadUnknown.WithDetail(map[string]string{"reason": why}).WithCause(errBadToken)
	}
	if !validUploadID(id) {
		return nil, unknown("malformed upload id")
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < 1+sha256.Size {
		return nil, unknown("malformed upload state")
	}
	payload, mac := raw[:len(raw)-sha256.Size], raw[len(raw)-sha256.Size:]
	if !hmac.Equal(mac, r.sign(repo, owner, payload)) {
		return nil, unknown("upload state signature mismatch")
	}
	u := &Upload{Repo: repo, Owner: owner}
	p := payload
	if p[0] != tokenVersion {
		return nil, unknown("unknown upload state version")
	}
	p = p[1:]
	var idb []byte
	var started int64
	var ok bool
	if idb, p, ok = readBytes(p); !ok {
		return nil, unknown("malformed upload state")
	}
	if u.Offset, p, ok = readVarint(p); !ok {
		return nil, unknown("malformed upload state")
	}
	if started, p, ok = readVarint(p); !ok {
		return nil, unknown("malformed upload state")
	}
	if u.hash, p, ok = readBytes(p); !ok {
		return nil, unknown("malformed upload state")
	}
	if u.state, p, ok = readBytes(p); !ok || len(p) != 0 {
		return nil, unknown("malformed upload state")
	}
	u.ID = string(idb)
	u.Started = time.Unix(started, 0)
	if u.ID != id {
		return nil, unknown("upload state belongs to another upload")
	}
	if time.Since(u.Started) > r.opts.UploadExpiry {
		return nil, unknown(fmt.Sprintf("upload expired (started %s)", u.Started.UTC().Format(time.RFC3339)))
	}
	return u, nil
}

func readBytes(p []byte) ([]byte, []byte, bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}

func readVarint(p []byte) (int64, []byte, bool) {
	v, k := binary.Varint(p)
	if k <= 0 {
		return 0, nil, false
	}
	return v, p[k:], true
}
