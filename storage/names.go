package storage

import (
	"crypto/sha256"
	"crypto/sha512"
	"regexp"

	"github.com/opencontainers/go-digest"

	regerr "github.com/registryd/registryd/errors"
)

// Digest algorithms registryd accepts. Importing the hash packages registers them with
// go-digest.
var (
	_ = sha256.New
	_ = sha512.New
)

var (
	nameRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// MaxNameLength is the longest repository name accepted.
const MaxNameLength = 255

// ValidateName returns a NAME_INVALID error unless name is a valid repository name
// (OCI distribution spec grammar, at most 255 characters).
func ValidateName(name string) error {
	if len(name) == 0 || len(name) > MaxNameLength || !nameRe.MatchString(name) {
		return regerr.NameInvalid.WithDetail(map[string]string{"name": truncate(name)})
	}
	return nil
}

// ValidateTag returns a TAG_INVALID error unless tag matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func ValidateTag(tag string) error {
	if !tagRe.MatchString(tag) {
		return regerr.TagInvalid.WithDetail(map[string]string{"tag": truncate(tag)})
	}
	return nil
}

// ParseDigest parses s as a sha256 or sha512 digest, returning DIGEST_INVALID otherwise.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err == nil && d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512 {
		err = digest.ErrDigestUnsupported
	}
	if err != nil {
		return "", regerr.DigestInvalid.WithMessage("invalid digest: %v", err).WithDetail(map[string]string{"digest": truncate(s)})
	}
	return d, nil
}

// IsDigest reports whether ref looks like a digest (contains ':'), as opposed to a tag.
func IsDigest(ref string) bool {
	for i := 0; i < len(ref); i++ {
		if ref[i] == ':' {
			return true
		}
	}
	return false
}

func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
