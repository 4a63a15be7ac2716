package e2e

import (
	"encoding/json"
	"strings"
)

// startupFailure turns what registryd printed when it refused to start into plain text: a
// JSON log line becomes "<key>: <error>" (or "<error>" when it names no key), any other line
// stays as it is, so tests can look for the key and message an operator reads.
func startupFailure(out []byte) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var rec struct {
			Key   string `json:"key"`
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Error == "" {
			b.WriteString(line)
		} else if rec.Key != "" {
			b.WriteString(rec.Key + ": " + rec.Error)
		} else {
			b.WriteString(rec.Error)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
