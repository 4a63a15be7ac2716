package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func bcryptHash(t *testing.T, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestParseHtpasswd(t *testing.T) {
	good := bcryptHash(t, "pw", bcrypt.MinCost)
	for _, c := range []struct {
		name, content string
		users         int
		wantErr       string // substring naming file and line
	}{
		{"bcrypt entries, comments and blank lines", "# users\nalice:" + good + "\n\n  bob:" + good + "  \r\n", 2, ""},
		{"2b and 2a prefixes", "a:" + strings.Replace(good, "$2a$", "$2b$", 1) + "\nb:" + good, 2, ""},
		{"empty file", "", 0, ""},
		{"apr1", "alice:" + good + "\nbob:$apr1$abc$defghijklmnopqrstuvwx1\n", 0, "f:2: user \"bob\": not a bcrypt hash (Apache MD5"},
		{"sha1", "carol:{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", 0, "f:1: user \"carol\": not a bcrypt hash (SHA-1"},
		{"sha-crypt", "\n\ndave:$6$salt$hash", 0, "f:3: user \"dave\": not a bcrypt hash (SHA-crypt"},
		{"plain text", "erin:secret", 0, "f:1: user \"erin\": not a bcrypt hash (plain text"},
		{"no colon", "alice" + good, 0, "f:1: malformed line"},
		{"empty user", ":" + good, 0, "f:1: malformed line"},
		{"empty hash", "alice:", 0, "f:1: malformed line"},
		{"truncated bcrypt", "alice:" + good[:20], 0, "f:1: user \"alice\": malformed bcrypt hash"},
		{"duplicate", "alice:" + good + "\nalice:" + good, 0, "f:2: user \"alice\" appears twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			users, err := parseHtpasswd("f", []byte(c.content))
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), "htpasswd "+c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				if strings.Contains(err.Error(), "$apr1$abc") || strings.Contains(err.Error(), "qUqP5") {
					t.Errorf("the error shows the hash: %v", err)
				}
				return
			}
			if err != nil || len(users) != c.users {
				t.Fatalf("%d users, %v; want %d", len(users), err, c.users)
			}
		})
	}
}

func TestOpenHtpasswdMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope")
	_, err := New(Options{Htpasswd: &HtpasswdOptions{Path: p}})
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error %v, want one naming %s", err, p)
	}
}

// TestHtpasswdReload edits the file in place and swaps it the way a Kubernetes Secret
// volume does (a ..data symlink replaced atomically); a malformed version keeps the
// users loaded before.
func TestHtpasswdReload(t *testing.T) {
	dir := t.TempDir()
	write := func(sub, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, "htpasswd"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	swap := func(sub string) {
		t.Helper()
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(sub, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob := "alice:"+bcryptHash(t, "a-pw", bcrypt.MinCost), "bob:"+bcryptHash(t, "b-pw", bcrypt.MinCost)
	write("..v1", alice+"\n")
	swap("..v1")
	if err := os.Symlink("..data/htpasswd", filepath.Join(dir, "htpasswd")); err != nil {
		t.Fatal(err)
	}
	h, err := openHtpasswd(filepath.Join(dir, "htpasswd"))
	if err != nil {
		t.Fatal(err)
	}
	check := func(step string, wantAlice, wantBob bool) {
		t.Helper()
		if got := h.verify("alice", "a-pw"); got != wantAlice {
			t.Errorf("%s: alice verifies %v, want %v", step, got, wantAlice)
		}
		if got := h.verify("bob", "b-pw"); got != wantBob {
			t.Errorf("%s: bob verifies %v, want %v", step, got, wantBob)
		}
	}
	check("start", true, false)
	if changed, err := h.reload(); changed || err != nil {
		t.Fatalf("reload of an unchanged file: changed %v, %v", changed, err)
	}

	write("..v2", bob+"\n")
	swap("..v2")
	if changed, err := h.reload(); !changed || err != nil {
		t.Fatalf("reload after the swap: changed %v, %v", changed, err)
	}
	check("after the Secret swap", false, true)

	write("..v3", bob+"\nmallory:$apr1$x$y\n")
	swap("..v3")
	if _, err := h.reload(); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Fatalf("reload of a malformed file: %v, want an error naming line 2", err)
	}
	if _, err := h.reload(); err != nil {
		t.Errorf("the same error is reported again: %v", err)
	}
	check("after a malformed version", false, true)

	// An edit in place of the target file, same size and inode.
	write("..v3", alice+"\n"+bob+"\n")
	if changed, err := h.reload(); !changed || err != nil {
		t.Fatalf("reload after an edit in place: changed %v, %v", changed, err)
	}
	check("after an edit in place", true, true)
}

// TestUnknownUserCostsAsWrongPassword: an unknown user pays one bcrypt comparison at the
// file's cost, like a wrong password.
func TestUnknownUserCostsAsWrongPassword(t *testing.T) {
	const cost = 8
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("alice:"+bcryptHash(t, "right", cost)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := openHtpasswd(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := bcrypt.Cost(h.dummy); c != cost {
		t.Fatalf("dummy hash cost %d, want the file's %d", c, cost)
	}
	measure := func(user, pw string) time.Duration {
		best := time.Hour
		for range 5 {
			start := time.Now()
			if h.verify(user, pw) {
				t.Fatalf("%s/%s verified", user, pw)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	wrong, unknown := measure("alice", "wrong"), measure("nobody", "wrong")
	// Loose bounds for a loaded machine: skipping bcrypt would be thousands of times faster.
	if unknown < wrong/4 || unknown > wrong*4 {
		t.Errorf("unknown user took %v, wrong password %v: want about the same", unknown, wrong)
	}
}
