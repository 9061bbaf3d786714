package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

// Cursors is a connector's small durable state (poll offsets) in the
// region's cursors bucket. Keys are prefixed with the connector id and
// escaped, so connectors never collide and any key a connector picks is a
// valid KV key.
type Cursors struct {
	kv        jetstream.KeyValue
	connector string
}

var _ connectors.Store = (*Cursors)(nil)

// NewCursors returns the store of connector over kv (bus.Region.Cursors).
func NewCursors(kv jetstream.KeyValue, connector string) *Cursors {
	return &Cursors{kv: kv, connector: connector}
}

func (c *Cursors) key(k string) string { return bus.LeaseKey(c.connector, k) }

// Get returns the value of key, or an error wrapping connectors.ErrNotFound
// when it was never written.
func (c *Cursors) Get(ctx context.Context, key string) ([]byte, error) {
	e, err := c.kv.Get(ctx, c.key(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("cursor %s of %s: %w", key, c.connector, connectors.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading cursor %s of %s: %w", key, c.connector, err)
	}
	return e.Value(), nil
}

// Put stores value under key; it returns once the write is acknowledged.
func (c *Cursors) Put(ctx context.Context, key string, value []byte) error {
	if _, err := c.kv.Put(ctx, c.key(key), value); err != nil {
		return fmt.Errorf("writing cursor %s of %s: %w", key, c.connector, err)
	}
	return nil
}

// Conversations lets a connector mark conversations reachable or not, over
// the region's directory.
type Conversations struct {
	dir *directory.Store
}

var _ connectors.Conversations = (*Conversations)(nil)

// NewConversations adapts dir to connectors.Conversations.
func NewConversations(dir *directory.Store) *Conversations { return &Conversations{dir: dir} }

// SetReachable records whether replies can reach a conversation. A
// conversation the directory has never seen is left alone.
func (c *Conversations) SetReachable(ctx context.Context, id normalize.ConversationID, reachable bool, reason string) error {
	if err := c.dir.SetReachable(ctx, id, reachable, reason); err != nil {
		return fmt.Errorf("recording reachability of %s: %w", id, err)
	}
	return nil
}
