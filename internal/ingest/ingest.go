// Package ingest is the durable entry point of inbound traffic: the
// connectors.Publisher that every connector publishes its canonical events
// through, plus the small stores a connector is handed (poll cursors,
// conversation reachability).
//
// Invariants:
//
//   - Publish returns nil only when every event of the call, and the media
//     job of every attachment they carry, is stored in JetStream and the
//     conversation directory records them. Any other outcome is an error
//     wrapping connectors.ErrNotDurable (and, for a bus failure,
//     bus.ErrNotDurable), so a connector never acknowledges the platform for
//     something that could be lost.
//   - The directory writes travel in the same pipelined batch as the events,
//     sent ahead of them, as compare-and-sets at the revision the directory
//     has cached (or has just read, for a conversation it had not cached):
//     one round trip to NATS on the common path. The server stores each
//     stream's messages on its own, so "ahead" narrows, but does not close,
//     the moment an event is visible before its record; the sequential
//     writes before this left two round trips open. A write refused because
//     another instance moved the entry on is redone by re-reading
//     (directory.RecordInbound) before Publish returns. Since the batch is
//     pipelined, a failed call may leave the directory recording an event
//     that is not stored yet; the platform's redelivery stores it.
//   - Events and jobs carry deterministic Nats-Msg-Ids (the event id;
//     "media:<event id>:<index>"), so the platform's redelivery after an
//     error stores nothing twice.
//   - Every event with a conversation carries window_expires_at as the
//     directory records it once the event is applied, from the connector's
//     own Policy: the same answer the outbox enforces.
//   - An event the server refuses for good (over its max payload, say) and
//     an event that cannot be encoded (a connector bug) are not an outage:
//     Publish returns an error wrapping connectors.ErrRefused, never
//     ErrNotDurable, so the connector dead-letters the update (Rejects)
//     and moves on instead of asking the platform to redeliver it for ever.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/normalize"
)

// Options configure a Publisher for one connector.
type Options struct {
	Bus       *bus.Bus
	Region    string
	Platform  string
	Connector string
	// Account is the platform account recorded in the directory (the
	// outbox's Address.Account) for events that do not name their own in
	// Data.Account. Empty leaves the directory's value alone.
	Account string
	// Directory records each event's conversation; nil skips it (tests).
	Directory *directory.Store
	// Policy is the connector's Policy, for the reply window of each event's
	// conversation; nil means no window.
	Policy  func(connectors.Address) connectors.Policy
	Metrics *metrics.Metrics // nil records nothing
	Logger  *slog.Logger     // nil discards
	Now     func() time.Time // nil is time.Now
}

// Publisher stores one connector's events. It is safe for concurrent use.
type Publisher struct {
	o   Options
	log *slog.Logger
	// readTimeout bounds reading directory entries before a publish.
	readTimeout time.Duration
}

var _ connectors.Publisher = (*Publisher)(nil)

// New returns the Publisher of one connector. It does no I/O.
func New(o Options) *Publisher {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	p := &Publisher{o: o, log: o.Logger, readTimeout: bus.DefaultPublishTimeout}
	if o.Bus != nil {
		p.readTimeout = o.Bus.Options().PublishTimeout
	}
	return p
}

// notDurableError marks a storage failure for connectors (errors.Is with
// connectors.ErrNotDurable) while keeping the cause, bus.ErrNotDurable
// included, in the chain.
type notDurableError struct{ err error }

func (e *notDurableError) Error() string { return e.err.Error() }
func (e *notDurableError) Unwrap() error { return e.err }
func (e *notDurableError) Is(target error) bool {
	return target == connectors.ErrNotDurable
}

func notDurable(format string, args ...any) error {
	return &notDurableError{err: fmt.Errorf(format, args...)}
}

// refused marks events the server will never store (connectors.ErrRefused).
func refused(format string, args ...any) error {
	return fmt.Errorf("%w: %w", connectors.ErrRefused, fmt.Errorf(format, args...))
}

// Publish stores events, the media jobs of their attachments and the
// directory records of their conversations in one batch, and waits for
// every acknowledgement. See the package invariants.
// Probe implements connectors.Prober: it asks JetStream for the account's
// state, which succeeds only while events could be stored.
func (p *Publisher) Probe(ctx context.Context) error {
	if _, err := p.o.Bus.JS().AccountInfo(ctx); err != nil {
		return fmt.Errorf("probing jetstream: %w: %w", connectors.ErrNotDurable, err)
	}
	return nil
}

func (p *Publisher) Publish(ctx context.Context, events ...*normalize.Event) error {
	if len(events) == 0 {
		return nil
	}
	for i, ev := range events {
		if ev == nil {
			return refused("event %d of %d: nil event", i, len(events))
		}
	}

	// The directory writes go first, so that a consumer who sees an event
	// and replies at once finds its conversation recorded (see above). Jobs go after
	// the events: a consumer of media events never sees one before its
	// message.
	var dw *directory.InboundWrite
	var dirMsgs []bus.Message
	recs := p.inbound(events)
	if p.o.Directory != nil {
		dw = p.o.Directory.PrepareInbound(recs)
		if dw.Missing() > 0 && p.o.Bus.Conn().IsConnected() {
			// Entries missing from the directory's cache are read first,
			// bounded like one publish attempt, so that they join the
			// batch. While the connection is down nothing is read: the
			// publish below reports the outage within its own budget.
			rctx, cancel := context.WithTimeout(ctx, p.readTimeout)
			dw.Load(rctx)
			cancel()
		}
		dirMsgs = dw.Messages()
	}
	p.stampWindows(dw, recs)

	evMsgs := make([]bus.Message, 0, len(events))
	var jobs []bus.Message
	for _, ev := range events {
		m, err := p.eventMessage(ev)
		if err != nil {
			return refused("%w", err)
		}
		evMsgs = append(evMsgs, m)
		js, err := p.jobMessages(ev)
		if err != nil {
			return refused("%w", err)
		}
		jobs = append(jobs, js...)
	}
	msgs := evMsgs
	if len(dirMsgs) > 0 || len(jobs) > 0 {
		msgs = make([]bus.Message, 0, len(dirMsgs)+len(evMsgs)+len(jobs))
		msgs = append(append(append(msgs, dirMsgs...), evMsgs...), jobs...)
	}

	results, err := p.o.Bus.Publish(ctx, msgs...)
	var retry []normalize.ConversationID
	if dw != nil {
		retry = dw.Settle(results[:min(len(results), len(dirMsgs))])
	}
	if err != nil {
		p.o.Metrics.PublishFailed(p.o.Region, p.o.Connector)
		if errors.Is(err, bus.ErrInvalidMessage) {
			// The server refused a message (say, over max payload): the
			// platform's retry would meet the same refusal.
			return refused("storing %d events: %w", len(events), err)
		}
		return notDurable("storing %d events: %w", len(events), err)
	}
	evResults := results[len(dirMsgs):]
	for i, ev := range events {
		if evResults[i].Duplicate {
			p.o.Metrics.EventDuplicate(p.o.Region, p.o.Platform, p.o.Connector, ev.Type)
			p.log.Debug("duplicate event dropped", "event_id", ev.ID, "type", ev.Type)
			continue
		}
		p.o.Metrics.EventPublished(p.o.Region, p.o.Platform, p.o.Connector, ev.Type)
		p.log.Debug("event stored", "event_id", ev.ID, "type", ev.Type, "conversation_id", ev.Subject)
	}
	if len(retry) == 0 {
		return nil
	}

	// Another writer moved these entries on since they were read, or they
	// could not be prepared: record their events by reading first.
	for _, ev := range events {
		if !slices.Contains(retry, ev.Subject) || ev.Data.Conversation == nil {
			continue
		}
		p.log.Debug("recording a conversation by reading its entry", "conversation_id", ev.Subject, "event_id", ev.ID)
		if err := p.o.Directory.RecordInbound(ctx, p.record(ev)); err != nil {
			// The events are stored but the directory does not know the
			// conversation yet, so a reply could not be routed: let the
			// platform redeliver; the repeated events are dropped as
			// duplicates and the directory is written then.
			p.o.Metrics.PublishFailed(p.o.Region, p.o.Connector)
			return notDurable("recording conversation %s: %w", ev.Subject, err)
		}
	}
	return nil
}

// inbound lists the events that name a conversation, for the directory.
func (p *Publisher) inbound(events []*normalize.Event) []directory.Inbound {
	recs := make([]directory.Inbound, 0, len(events))
	for _, ev := range events {
		if ev.Subject == "" || ev.Data.Conversation == nil {
			continue
		}
		recs = append(recs, p.record(ev))
	}
	return recs
}

// record is what the directory records for ev: its account, and the reply
// window of its conversation as the connector's policy answers it.
func (p *Publisher) record(ev *normalize.Event) directory.Inbound {
	in := directory.Inbound{Event: ev, Account: p.account(ev)}
	if p.o.Policy != nil && ev.Data.Conversation != nil {
		c := ev.Data.Conversation
		in.Window = p.o.Policy(connectors.Address{
			ConversationID: ev.Subject, Kind: c.Kind, PlatformID: c.PlatformID, ThreadID: c.ThreadID, Account: in.Account,
		}).Window
	}
	return in
}

// stampWindows sets window_expires_at on every event with a conversation:
// the window its directory entry records once the batch is applied, or,
// for an entry not known yet, the one a customer's event opens itself.
func (p *Publisher) stampWindows(dw *directory.InboundWrite, recs []directory.Inbound) {
	for _, r := range recs {
		if dw != nil {
			if w, known := dw.WindowExpiresAt(r.Event.Subject); known {
				r.Event.Data.WindowExpiresAt = w
				continue
			}
		}
		if r.Window != nil && directory.FromCustomer(r.Event) {
			t := r.Window.Expires(r.Event.Time).UTC()
			r.Event.Data.WindowExpiresAt = &t
		}
	}
}

// account is the platform account the directory records for ev.
func (p *Publisher) account(ev *normalize.Event) string {
	if ev.Data.Account != "" {
		return ev.Data.Account
	}
	return p.o.Account
}

// eventMessage encodes ev for its subject.
func (p *Publisher) eventMessage(ev *normalize.Event) (bus.Message, error) {
	data, err := normalize.Encode(ev)
	if err != nil {
		return bus.Message{}, fmt.Errorf("encoding event %s: %w", ev.ID, err)
	}
	return bus.Message{
		Subject: p.o.Bus.Subjects().Event(p.o.Region, p.o.Platform, p.o.Connector,
			string(ev.Subject), ev.Type.Kind()),
		MsgID:  string(ev.ID),
		Data:   data,
		Header: nats.Header{"Content-Type": []string{normalize.ContentType}},
	}, nil
}

// jobMessages builds the media jobs of ev's attachments: one per pending
// attachment, and one flagged to fail at once per unavailable attachment so
// that the same worker announces media.failed for it.
func (p *Publisher) jobMessages(ev *normalize.Event) ([]bus.Message, error) {
	if ev.Data.Message == nil || len(ev.Data.Message.Attachments) == 0 {
		return nil, nil
	}
	var out []bus.Message
	for i, a := range ev.Data.Message.Attachments {
		job := media.Job{
			MediaID:         a.MediaID,
			FetchRef:        a.FetchRef,
			AttachmentIndex: i,
			Kind:            a.Kind,
			MimeType:        a.MimeType,
			Size:            a.Size,
			Filename:        a.Filename,
			MessageID:       ev.Data.Message.PlatformID,
			EventID:         ev.ID,
			ConversationID:  ev.Subject,
			Time:            ev.Time,
			Region:          p.o.Region,
			Platform:        p.o.Platform,
			Connector:       p.o.Connector,
			Conversation:    ev.Data.Conversation,
			Sender:          ev.Data.Sender,
		}
		switch a.Status {
		case normalize.MediaStored:
			continue // the connector stored it itself; nothing to fetch
		case normalize.MediaUnavailable:
			job.Unavailable = a.UnavailableReason
			if job.Unavailable == "" {
				job.Unavailable = "media unavailable"
			}
		default: // pending, or unset
			if a.FetchRef == "" {
				job.Unavailable = "no fetch reference from the connector"
			}
		}
		body, err := json.Marshal(job)
		if err != nil {
			return nil, fmt.Errorf("encoding media job %d of event %s: %w", i, ev.ID, err)
		}
		out = append(out, bus.Message{
			Subject: p.o.Bus.Subjects().MediaJob(p.o.Region, p.o.Platform, p.o.Connector, string(ev.Subject)),
			MsgID:   media.JobMsgID(ev.ID, i),
			Data:    body,
			Header:  nats.Header{"Content-Type": []string{"application/json"}},
		})
	}
	return out, nil
}

// StateEventID is the id of the connector.state event of h. Reason and
// action are part of it, so a new reason in the same state is a new event,
// while re-publishing the same health is dropped as a duplicate.
func StateEventID(connector string, h connectors.Health) normalize.EventID {
	return normalize.NewEventID("parley", connector, "state", string(h.State),
		strconv.FormatInt(h.Since.UnixNano(), 10), h.Reason, h.Action)
}

// PublishState publishes h as a parley.connector.state event on the
// connector-level subject (conversation token "_").
func (p *Publisher) PublishState(ctx context.Context, h connectors.Health) error {
	now := p.o.Now().UTC()
	if h.Since.IsZero() {
		h.Since = now
	}
	ev := &normalize.Event{
		ID:     StateEventID(p.o.Connector, h),
		Source: normalize.Source(p.o.Region, p.o.Platform, p.o.Connector),
		Type:   normalize.TypeConnectorState,
		Time:   h.Since,
		Data: normalize.Data{
			Region: p.o.Region, Platform: p.o.Platform, Connector: p.o.Connector,
			State:      &normalize.ConnectorState{State: h.State, Reason: h.Reason, Action: h.Action},
			ReceivedAt: now,
		},
	}
	return p.Publish(ctx, ev)
}
