// Package syncbuf is a buffer safe for concurrent writes: the logs and
// process output that tests capture and read while something still writes.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes from any number of goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (w *Buffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String returns everything written so far.
func (w *Buffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
