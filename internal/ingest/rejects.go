package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/metrics"
)

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

// RejectedUpdate is one inbound dead letter, as `parley dlq list --inbound`
// shows it.
type RejectedUpdate struct {
	Seq       uint64
	Connector string
	Platform  string
	Reason    string
	Detail    string
	UpdateID  string
	Size      int // bytes the platform sent
	Kept      int // bytes kept
	At        time.Time
}

// ListRejected returns the inbound dead letters of a region, oldest first.
func ListRejected(ctx context.Context, b *bus.Bus, region string) ([]RejectedUpdate, error) {
	s, err := b.JS().Stream(ctx, bus.StreamName(bus.StreamDLQ, region))
	if err != nil {
		return nil, fmt.Errorf("opening the dead-letter stream of region %s: %w", region, err)
	}
	var out []RejectedUpdate
	err = bus.Scan(ctx, s, b.Subjects().DLQs(region), func(m *jetstream.RawStreamMsg) error {
		info, err := bus.ParseSubject(m.Subject)
		if err != nil || info.Kind != bus.InboundKind {
			return nil
		}
		size, _ := strconv.Atoi(m.Header.Get(HeaderRejectSize))
		out = append(out, RejectedUpdate{
			Seq: m.Sequence, Connector: info.Connector, Platform: info.Platform,
			Reason: m.Header.Get(HeaderRejectReason), Detail: m.Header.Get(HeaderRejectDetail),
			UpdateID: m.Header.Get(HeaderRejectUpdate), Size: size, Kept: len(m.Data), At: m.Time,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading dead letters of region %s: %w", region, err)
	}
	return out, nil
}
