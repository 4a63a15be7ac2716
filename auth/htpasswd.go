package auth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// HtpasswdOptions configures HTTP Basic authentication.
type HtpasswdOptions struct {
	// Realm is the realm of the Basic challenge (default "registryd").
	Realm string
	// Path is the htpasswd file: "user:hash" lines with bcrypt hashes ($2y$, $2b$, $2a$);
	// empty lines and lines starting with # are ignored.
	Path string
}

// maxHtpasswdSize bounds the htpasswd file read.
const maxHtpasswdSize = 16 << 20

// Successful logins are remembered (by a keyed hash of user, password and stored hash)
// for verifiedTTL, so that a push's dozens of requests do not each pay for bcrypt. Failed
// ones are never remembered: every wrong password, and every unknown user, costs one
// bcrypt comparison.
const (
	verifiedTTL = 5 * time.Minute
	verifiedMax = 4096
)

// htpasswd holds the users of an htpasswd file, reloaded when the file changes.
type htpasswd struct {
	path string

	mu       sync.RWMutex
	users    map[string][]byte
	dummy    []byte   // a bcrypt hash of the users' cost, compared for unknown users
	sum      [32]byte // sha256 of the content loaded
	lastErr  string   // the last reload error, logged once
	verified map[[32]byte]time.Time
	key      [32]byte // keys the verified cache
}

// openHtpasswd reads and checks path.
func openHtpasswd(path string) (*htpasswd, error) {
	h := &htpasswd{path: path, verified: map[[32]byte]time.Time{}}
	_, _ = rand.Read(h.key[:])
	b, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("auth.htpasswd.path: %w", err)
	}
	users, err := parseHtpasswd(path, b)
	if err != nil {
		return nil, err
	}
	h.users, h.dummy, h.sum = users, dummyHash(users), sha256.Sum256(b)
	return h, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxHtpasswdSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxHtpasswdSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxHtpasswdSize)
	}
	return b, nil
}

// parseHtpasswd parses an htpasswd file's content. Every entry must be a bcrypt hash; an
// error names the file (name) and line.
func parseHtpasswd(name string, content []byte) (map[string][]byte, error) {
	users := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(content))
	sc.Buffer(make([]byte, 0, 4096), maxHtpasswdSize)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || hash == "" {
			return nil, fmt.Errorf("auth: htpasswd %s:%d: malformed line, want user:bcrypt-hash", name, n)
		}
		if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2a$") {
			return nil, fmt.Errorf("auth: htpasswd %s:%d: user %q: not a bcrypt hash (%s); only bcrypt entries are accepted (htpasswd -B)",
				name, n, user, hashKind(hash))
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("auth: htpasswd %s:%d: user %q: malformed bcrypt hash", name, n, user)
		}
		if _, dup := users[user]; dup {
			return nil, fmt.Errorf("auth: htpasswd %s:%d: user %q appears twice", name, n, user)
		}
		users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: htpasswd %s: %w", name, err)
	}
	return users, nil
}

// hashKind names a non-bcrypt hash by its scheme, never showing the hash itself.
func hashKind(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$apr1$"):
		return "Apache MD5, $apr1$"
	case strings.HasPrefix(hash, "$1$"):
		return "MD5-crypt, $1$"
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return "SHA-crypt, " + hash[:3]
	case strings.HasPrefix(hash, "{SHA}"):
		return "SHA-1, {SHA}"
	case strings.HasPrefix(hash, "$"):
		return "unknown scheme"
	default:
		return "plain text or crypt(3)"
	}
}

// dummyHash returns a bcrypt hash of a random password at the cost most users have, so
// that checking an unknown user costs what a wrong password does.
func dummyHash(users map[string][]byte) []byte {
	counts := map[int]int{}
	cost, best := bcrypt.DefaultCost, 0
	for _, h := range users {
		c, _ := bcrypt.Cost(h)
		counts[c]++
		if counts[c] > best || counts[c] == best && c > cost {
			cost, best = c, counts[c]
		}
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil {
		h, _ = bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)
	}
	return h
}

// verify reports whether pass is user's password. Unknown users and wrong passwords
// both cost one bcrypt comparison.
func (h *htpasswd) verify(user, pass string) bool {
	h.mu.RLock()
	hash, ok := h.users[user]
	dummy := h.dummy
	h.mu.RUnlock()
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummy, []byte(pass))
		return false
	}
	k := h.cacheKey(user, pass, hash)
	now := time.Now()
	h.mu.RLock()
	exp, hit := h.verified[k]
	h.mu.RUnlock()
	if hit && now.Before(exp) {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	h.mu.Lock()
	if len(h.verified) >= verifiedMax {
		clear(h.verified)
	}
	h.verified[k] = now.Add(verifiedTTL)
	h.mu.Unlock()
	return true
}

// cacheKey binds user, password and the stored hash: a changed password or a removed
// user no longer matches.
func (h *htpasswd) cacheKey(user, pass string, hash []byte) [32]byte {
	m := sha256.New()
	m.Write(h.key[:])
	for _, p := range [][]byte{[]byte(user), []byte(pass), hash} {
		m.Write(binary.AppendUvarint(nil, uint64(len(p))))
		m.Write(p)
	}
	var k [32]byte
	m.Sum(k[:0])
	return k
}

// reload re-reads the file and swaps the users in when its content changed. On an error
// (a missing or malformed file, say half-way through an edit) the current users stay; the
// error is returned once per distinct error, and nil after that.
func (h *htpasswd) reload() (changed bool, err error) {
	b, err := readLimited(h.path)
	if err == nil {
		sum := sha256.Sum256(b)
		h.mu.RLock()
		same := sum == h.sum
		h.mu.RUnlock()
		if same {
			_ = h.noteErr(nil) // forget the last error: the file reads well again
			return false, nil
		}
		var users map[string][]byte
		if users, err = parseHtpasswd(h.path, b); err == nil {
			dummy := dummyHash(users)
			h.mu.Lock()
			h.users, h.dummy, h.sum = users, dummy, sum
			clear(h.verified)
			h.lastErr = ""
			h.mu.Unlock()
			return true, nil
		}
	}
	return false, h.noteErr(err)
}

// noteErr returns err unless it repeats the last one.
func (h *htpasswd) noteErr(err error) error {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if msg == h.lastErr {
		return nil
	}
	h.lastErr = msg
	return err
}

// Run keeps the htpasswd file's users current until ctx ends: every ReloadInterval it
// reads the file (by path, following symlinks, so a Kubernetes Secret's atomic swap of
// its ..data link is seen like an edit in place) and reloads it when the content
// changed. A file that is missing or malformed keeps the users loaded before, with an
// error in the log. Run returns at once for token authentication.
func (c *Controller) Run(ctx context.Context) {
	if c.htpasswd == nil {
		return
	}
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := c.htpasswd.reload()
		if err != nil {
			c.log.Error("htpasswd reload failed; keeping the users loaded before", "path", c.htpasswd.path, "error", err)
		} else if changed {
			c.htpasswd.mu.RLock()
			n := len(c.htpasswd.users)
			c.htpasswd.mu.RUnlock()
			c.log.Info("htpasswd reloaded", "path", c.htpasswd.path, "users", n)
		}
	}
}
