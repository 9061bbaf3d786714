package outbox

import (
	"context"
	"sync"
	"time"

	"github.com/parley-gateway/parley/connectors/kit"
)

// pacer keeps the earliest time the next message may go to each
// conversation: the platform's per-chat minimum interval after a send, or
// the end of a retry-after it asked for. It outlives a conversation's queue,
// so a conversation that goes idle and comes back is still paced.
type pacer struct {
	mu   sync.Mutex
	next map[string]time.Time
}

func newPacer() *pacer { return &pacer{next: map[string]time.Time{}} }

// wait blocks until conv may send; false when ctx ended first.
func (p *pacer) wait(ctx context.Context, conv string) bool {
	for {
		p.mu.Lock()
		t := p.next[conv]
		p.mu.Unlock()
		d := time.Until(t)
		if d <= 0 {
			return true
		}
		// Loop: a retry-after may have pushed the time further meanwhile.
		if !kit.Sleep(ctx, d) {
			return false
		}
	}
}

// notBefore makes conv wait until at least t.
func (p *pacer) notBefore(conv string, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t.After(p.next[conv]) {
		p.next[conv] = t
	}
}

// prune forgets conversations whose time has passed.
func (p *pacer) prune(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, t := range p.next {
		if !t.After(now) {
			delete(p.next, k)
		}
	}
}
