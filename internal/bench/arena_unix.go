//go:build unix

package bench

import (
	"fmt"
	"syscall"
)

// mapChunk returns n bytes of anonymous private memory, outside the Go
// heap, for unmapChunk to release.
func mapChunk(n int) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("bench: mmap %d bytes: %w", n, err)
	}
	return b, nil
}

func unmapChunk(b []byte) error { return syscall.Munmap(b) }
