package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/metrics"
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

// maxRejectBytes bounds the raw bytes kept of one dead-lettered update (and
// half the server's max payload, so that keeping a refused update cannot be
// refused in turn); the original size is in a header.
const maxRejectBytes = 64 << 10

// Headers of an inbound dead letter.
const (
	HeaderRejectReason    = "Parley-Reject-Reason" // connectors.RejectRefused or RejectUnmappable
	HeaderRejectDetail    = "Parley-Reject-Detail" // what went wrong, one line
	HeaderRejectUpdate    = "Parley-Update-Id"     // the platform's id of the update, when known
	HeaderRejectSize      = "Parley-Original-Size" // bytes the platform sent
	HeaderRejectTruncated = "Parley-Truncated"     // "true" when only the first maxRejectBytes are kept
	HeaderRejectConnector = "Parley-Connector"     // the connector id
)

// Rejects keeps a connector's poison updates on the region's inbound
// dead-letter subject (connectors.Rejects).
type Rejects struct {
	bus                         *bus.Bus
	region, platform, connector string
	metrics                     *metrics.Metrics
}

var _ connectors.Rejects = (*Rejects)(nil)

// NewRejects returns the dead-letter keeper of one connector.
func NewRejects(b *bus.Bus, region, platform, connector string, m *metrics.Metrics) *Rejects {
	return &Rejects{bus: b, region: region, platform: platform, connector: connector, metrics: m}
}

// Reject implements connectors.Rejects. The Nats-Msg-Id derives from the
// connector and the bytes, so the platform's redelivery of the same update
// is kept once.
func (r *Rejects) Reject(ctx context.Context, rej connectors.Rejected) error {
	sum := sha256.Sum256(rej.Raw)
	data := rej.Raw
	h := nats.Header{
		"Content-Type":        []string{"application/octet-stream"},
		HeaderRejectReason:    []string{rej.Reason},
		HeaderRejectDetail:    []string{oneLine(rej.Detail, 512)},
		HeaderRejectSize:      []string{strconv.Itoa(len(rej.Raw))},
		HeaderRejectConnector: []string{r.connector},
	}
	if rej.UpdateID != "" {
		h.Set(HeaderRejectUpdate, oneLine(rej.UpdateID, 128))
	}
	// Half the server's max payload leaves room for the headers.
	if limit := min(maxRejectBytes, int(r.bus.Conn().MaxPayload()/2)); len(data) > limit {
		data = data[:limit]
		h.Set(HeaderRejectTruncated, "true")
	}
	res, err := r.bus.Publish(ctx, bus.Message{
		Subject: r.bus.Subjects().InboundDLQ(r.region, r.platform, r.connector),
		MsgID:   "inbound:" + r.connector + ":" + hex.EncodeToString(sum[:16]),
		Data:    data,
		Header:  h,
	})
	if err != nil {
		return notDurable("keeping a rejected update of %s: %w", r.connector, err)
	}
	if len(res) == 1 && !res[0].Duplicate {
		r.metrics.InboundDeadLettered(r.region, r.connector, rej.Reason)
	}
	return nil
}

// oneLine makes s fit a header: no line breaks, at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Map(func(c rune) rune {
		if c == '\r' || c == '\n' {
			return ' '
		}
		return c
	}, s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
