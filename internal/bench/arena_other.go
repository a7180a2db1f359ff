//go:build !unix

package bench

// mapChunk returns n bytes of Go heap where there is no anonymous mmap.
func mapChunk(n int) ([]byte, error) { return make([]byte, n), nil }

func unmapChunk([]byte) error { return nil }
