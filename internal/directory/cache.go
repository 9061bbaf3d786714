package directory

import (
	"container/list"
	"sync"

	"github.com/parley-gateway/parley/normalize"
)

// DefaultCacheSize is how many entries a Store keeps in memory unless
// WithCacheSize says otherwise. An entry costs roughly 0.5 KB, so the
// default holds about 50 MB at most, reached only after that many distinct
// conversations wrote in.
const DefaultCacheSize = 100_000

// cache remembers the last known entry of recently seen conversations with
// its KV revision: the last one read, or written and acknowledged. It only
// ever holds states that were durable at that revision; a newer revision
// may exist (another instance wrote), which a conditional write at the
// cached revision detects. It evicts the least recently used entry.
type cache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *cached, most recently used first
	m   map[normalize.ConversationID]*list.Element
}

type cached struct {
	id    normalize.ConversationID
	entry Entry
	rev   uint64
}

func newCache(max int) *cache {
	if max <= 0 {
		return nil
	}
	return &cache{max: max, ll: list.New(), m: make(map[normalize.ConversationID]*list.Element)}
}

// get returns a copy of the cached entry of id and its revision. A nil
// cache holds nothing.
func (c *cache) get(id normalize.ConversationID) (Entry, uint64, bool) {
	if c == nil {
		return Entry{}, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[id]
	if !ok {
		return Entry{}, 0, false
	}
	c.ll.MoveToFront(el)
	v := el.Value.(*cached)
	return v.entry, v.rev, true
}

// put remembers e at rev unless a later revision is cached already:
// revisions of one key only grow, so an older answer arriving late never
// replaces a newer one.
func (c *cache) put(id normalize.ConversationID, e *Entry, rev uint64) {
	if c == nil || e == nil || rev == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[id]; ok {
		v := el.Value.(*cached)
		if v.rev <= rev {
			v.entry, v.rev = *e, rev
		}
		c.ll.MoveToFront(el)
		return
	}
	c.m[id] = c.ll.PushFront(&cached{id: id, entry: *e, rev: rev})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*cached).id)
	}
}

// drop forgets id when its cached revision is at most rev: a write expected
// rev and was refused, so that state is stale. A later revision cached
// meanwhile stays.
func (c *cache) drop(id normalize.ConversationID, rev uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[id]; ok && el.Value.(*cached).rev <= rev {
		c.ll.Remove(el)
		delete(c.m, id)
	}
}

// len is how many entries are cached.
func (c *cache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
