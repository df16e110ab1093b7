package exec

import (
	"fmt"
	"sync"
)

// Bounded keeps the first and last Max/2 bytes written to it and counts
// what it dropped in between, so a chatty command cannot grow memory.
type Bounded struct {
	Max int

	mu      sync.Mutex
	head    []byte
	tail    []byte
	dropped int
}

// Write never fails.
func (b *Bounded) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	half := b.Max / 2
	if room := half - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	b.tail = append(b.tail, p...)
	if over := len(b.tail) - (b.Max - half); over > 0 {
		b.dropped += over
		b.tail = append(b.tail[:0:0], b.tail[over:]...)
	}
	return n, nil
}

// String returns head, a marker for the dropped middle, and tail.
func (b *Bounded) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return string(b.head) + string(b.tail)
	}
	return fmt.Sprintf("%s\n…[%d bytes omitted]…\n%s", b.head, b.dropped, b.tail)
}
