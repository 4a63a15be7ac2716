package e2e

// backends lists every storage backend the end-to-end tests run on.
func backends() []backend {
	return []backend{
		{"filesystem", filesystemBackend},
		{"inmemory", inmemoryBackend},
	}
}
