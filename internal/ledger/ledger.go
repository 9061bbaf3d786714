// Package ledger is the reply ledger: the record of every platform message
// Parley sent, in the region's bucket parley_ledger_<region>, kept for the
// bucket's TTL (bus.Options.LedgerTTL, 30 days by default). The outbox
// writes it in the same pipelined batch as each part's sent-marker; each
// connector reads it through connectors.Ledger (View) to resolve what the
// platform says later about those messages: which replies a receipt covers,
// whether an echo is Parley's own send, and which reply a late failure
// belongs to.
//
// Keys, every token escaped with bus.Token:
//
//	m.<connector>.<platform message id>        the part, looked up by id
//	c.<connector>.<conversation>.<day>.<id>    the same, listed per conversation and UTC day
//	late.<connector>.<reply id>                a late failure was reported for the reply
//
// Invariants: a record is written once, with content fixed by the send it
// records, so its Nats-Msg-Id is its key and a re-publish is a no-op. A
// late failure is published before its "late" key is created, and never
// when that key exists: a repeated status webhook within the events
// stream's dedupe window is dropped by the event id, and after it by the
// key.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

// listDays is how many UTC days back SentUntil looks for a conversation's
// sends: receipts are about recent messages, and each day is one listing.
const listDays = 7

// Ledger is one region's reply ledger. It is safe for concurrent use.
type Ledger struct {
	bus    *bus.Bus
	kv     jetstream.KeyValue
	region string
	dir    *directory.Store
	// subjects is "$KV.<bucket>.": a record is a plain publish there, so it
	// can share a batch with the sent-marker.
	subjects string
	now      func() time.Time
}

// New returns the ledger of a region over its bucket; dir describes the
// conversation of a late failure. It does no I/O.
func New(b *bus.Bus, kv jetstream.KeyValue, region string, dir *directory.Store) *Ledger {
	return &Ledger{bus: b, kv: kv, region: region, dir: dir, subjects: "$KV." + kv.Bucket() + ".", now: time.Now}
}

// record is a stored entry.
type record struct {
	PlatformID     string                   `json:"platform_id"`
	ReplyID        string                   `json:"reply_id"`
	Part           int                      `json:"part"`
	ConversationID normalize.ConversationID `json:"conversation_id"`
	SentAt         time.Time                `json:"sent_at"`
}

func (r record) sent() connectors.SentMessage {
	return connectors.SentMessage{PlatformID: r.PlatformID, ReplyID: r.ReplyID, Part: r.Part, ConversationID: r.ConversationID, SentAt: r.SentAt}
}

func msgKey(connector, platformID string) string {
	return "m." + bus.Token(connector) + "." + bus.Token(platformID)
}

func convPrefix(connector string, conv normalize.ConversationID) string {
	return "c." + bus.Token(connector) + "." + bus.Token(string(conv)) + "."
}

func dayToken(t time.Time) string { return t.UTC().Format("20060102") }

func lateKey(connector, replyID string) string {
	return "late." + bus.Token(connector) + "." + bus.Token(replyID)
}

// Messages returns the bus messages that record sent parts of connector's
// replies, for the caller to publish (with the sent-marker, in one batch).
// A part without a platform id (the platform named none) is not recorded.
func (l *Ledger) Messages(connector string, sent ...connectors.SentMessage) ([]bus.Message, error) {
	out := make([]bus.Message, 0, 2*len(sent))
	for _, s := range sent {
		if s.PlatformID == "" {
			continue
		}
		data, err := json.Marshal(record{PlatformID: s.PlatformID, ReplyID: s.ReplyID, Part: s.Part, ConversationID: s.ConversationID, SentAt: s.SentAt.UTC()})
		if err != nil {
			return nil, fmt.Errorf("encoding ledger record of %s: %w", s.PlatformID, err)
		}
		for _, key := range []string{
			msgKey(connector, s.PlatformID),
			convPrefix(connector, s.ConversationID) + dayToken(s.SentAt) + "." + bus.Token(s.PlatformID),
		} {
			out = append(out, bus.Message{
				Subject: l.subjects + key,
				MsgID:   "ledger:" + key,
				Data:    data,
				Header:  nats.Header{"Content-Type": []string{"application/json"}},
			})
		}
	}
	return out, nil
}

// For returns the ledger as one connector sees it.
func (l *Ledger) For(connector, platform string) *View {
	return &View{l: l, connector: connector, platform: platform}
}

// View is connectors.Ledger for one connector.
type View struct {
	l         *Ledger
	connector string
	platform  string
}

var _ connectors.Ledger = (*View)(nil)

// Sent implements connectors.Ledger.
func (v *View) Sent(ctx context.Context, platformID string) (connectors.SentMessage, error) {
	if platformID == "" {
		return connectors.SentMessage{}, fmt.Errorf("ledger: empty message id: %w", connectors.ErrNotFound)
	}
	e, err := v.l.kv.Get(ctx, msgKey(v.connector, platformID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return connectors.SentMessage{}, fmt.Errorf("ledger: message %s: %w", platformID, connectors.ErrNotFound)
	}
	if err != nil {
		return connectors.SentMessage{}, fmt.Errorf("reading the ledger for message %s: %w: %w", platformID, connectors.ErrNotDurable, err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return connectors.SentMessage{}, fmt.Errorf("ledger: message %s: unreadable record: %w", platformID, connectors.ErrNotFound)
	}
	return r.sent(), nil
}

// SentUntil implements connectors.Ledger. It lists the conversation's
// sends of t's UTC day and the days before it, back listDays days or until
// it has connectors.MaxLedgerList of them.
func (v *View) SentUntil(ctx context.Context, conv normalize.ConversationID, t time.Time) ([]connectors.SentMessage, error) {
	var out []connectors.SentMessage
	for d := range listDays {
		day := t.UTC().AddDate(0, 0, -d)
		recs, err := v.list(ctx, convPrefix(v.connector, conv)+dayToken(day)+".*")
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if !r.SentAt.After(t) {
				out = append(out, r.sent())
			}
		}
		if len(out) >= connectors.MaxLedgerList {
			break
		}
	}
	slices.SortStableFunc(out, func(a, b connectors.SentMessage) int {
		if c := a.SentAt.Compare(b.SentAt); c != 0 {
			return c
		}
		return a.Part - b.Part
	})
	if len(out) > connectors.MaxLedgerList {
		out = out[len(out)-connectors.MaxLedgerList:]
	}
	return out, nil
}

// list reads every record under a key filter.
func (v *View) list(ctx context.Context, filter string) ([]record, error) {
	w, err := v.l.kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("listing the ledger: %w: %w", connectors.ErrNotDurable, err)
	}
	defer func() { _ = w.Stop() }()
	var out []record
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("listing the ledger: %w: %w", connectors.ErrNotDurable, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("listing the ledger: %w: watcher closed", connectors.ErrNotDurable)
			}
			if e == nil {
				return out, nil // every current value delivered
			}
			var r record
			if json.Unmarshal(e.Value(), &r) == nil {
				out = append(out, r)
			}
		}
	}
}

// ReportLateFailure implements connectors.Ledger.
func (v *View) ReportLateFailure(ctx context.Context, m connectors.SentMessage, failure normalize.ReplyError) error {
	key := lateKey(v.connector, m.ReplyID)
	switch _, err := v.l.kv.Get(ctx, key); {
	case err == nil:
		return nil // reported before
	case !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted):
		return fmt.Errorf("reading the ledger for reply %s: %w: %w", m.ReplyID, connectors.ErrNotDurable, err)
	}
	ev := v.lateEvent(ctx, m, failure)
	data, err := normalize.Encode(ev)
	if err != nil {
		return fmt.Errorf("encoding the late failure of reply %s: %w", m.ReplyID, err)
	}
	subj := v.l.bus.Subjects().Event(v.l.region, v.platform, v.connector, string(m.ConversationID), ev.Type.Kind())
	if _, err := v.l.bus.Publish(ctx, bus.Message{Subject: subj, MsgID: string(ev.ID), Data: data}); err != nil {
		return fmt.Errorf("publishing the late failure of reply %s: %w: %w", m.ReplyID, connectors.ErrNotDurable, err)
	}
	// A failed create leaves the failure stored but not remembered past the
	// dedupe window, so a redelivery after that may publish it once more:
	// better than asking the platform to redeliver what is stored.
	_, _ = v.l.kv.Create(ctx, key, []byte(m.PlatformID))
	return nil
}

// lateEvent builds the late reply.failed of m. The conversation is
// described from the directory when it can be read at once.
func (v *View) lateEvent(ctx context.Context, m connectors.SentMessage, failure normalize.ReplyError) *normalize.Event {
	now := v.l.now().UTC()
	conv := &normalize.Conversation{ID: m.ConversationID}
	var window *time.Time
	if v.l.dir != nil {
		if e, _, err := v.l.dir.Get(ctx, m.ConversationID); err == nil {
			conv = &normalize.Conversation{ID: m.ConversationID, PlatformID: e.PlatformID, Kind: e.Kind, Title: e.Title, ThreadID: e.ThreadID}
			window = e.WindowExpiresAt
		}
	}
	if failure.Code == "" {
		failure.Code = normalize.ErrPlatformError
	}
	return &normalize.Event{
		ID:      normalize.StatusEventID(m.ReplyID, "late"),
		Source:  normalize.Source(v.l.region, v.platform, v.connector),
		Type:    normalize.TypeReplyFailed,
		Subject: m.ConversationID,
		Time:    now,
		Data: normalize.Data{
			Region: v.l.region, Platform: v.platform, Connector: v.connector,
			Conversation: conv,
			Reply: &normalize.ReplyStatus{ID: m.ReplyID, Attempts: failure.Attempts, PlatformIDs: []string{m.PlatformID},
				Error: &failure, Late: true},
			ReceivedAt: now, WindowExpiresAt: window,
		},
	}
}
