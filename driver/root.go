package driver

import (
	"fmt"
	"strings"
)

// Root maps caller paths to backend object names under an optional root directory, for
// object-store drivers. The zero value is the bucket's root.
type Root struct {
	dir string // without leading or trailing slashes; "" for none
}

// NewRoot returns the Root for a configured root directory ("" or "/" for none); leading
// and trailing slashes are ignored. It fails (wrapping ErrInvalidPath) when the directory
// is not a valid path.
func NewRoot(dir string) (Root, error) {
	dir = strings.Trim(dir, "/")
	if dir != "" {
		if err := CheckPath(dir); err != nil {
			return Root{}, fmt.Errorf("rootdirectory %q: %w", dir, err)
		}
	}
	return Root{dir: dir}, nil
}

// Dir returns the root directory without slashes ("" for none).
func (r Root) Dir() string { return r.dir }

// Key returns the object name of caller path p.
func (r Root) Key(p string) string {
	if r.dir == "" {
		return p
	}
	return r.dir + "/" + p
}

// DirPrefix returns the object name prefix of the entries of directory dir ("" is the root).
func (r Root) DirPrefix(dir string) string {
	switch {
	case dir == "" && r.dir == "":
		return ""
	case dir == "":
		return r.dir + "/"
	default:
		return r.Key(dir) + "/"
	}
}

// PathOf returns the caller's path of an object name (or of a prefix without its slash).
func (r Root) PathOf(name string) string {
	if r.dir == "" {
		return name
	}
	return strings.TrimPrefix(name, r.dir+"/")
}
