package main

import "crypto/sha256"

// minSigningKey is the shortest upload-state signing key storage accepts.
const minSigningKey = 16

// signingKey returns the upload-state signing key of http.secret: the secret itself, or,
// for a secret shorter than minSigningKey (CNCF Distribution accepts any, and its examples
// use short ones; config warns about it), its SHA-256, so that every replica configured
// with the same secret derives the same key. It adds no entropy. An empty secret gives nil.
func signingKey(secret string) []byte {
	if secret == "" {
		return nil
	}
	if len(secret) < minSigningKey {
		sum := sha256.Sum256([]byte(secret))
		return sum[:]
	}
	return []byte(secret)
}
