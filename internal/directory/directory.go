// Package directory is the conversation directory: one entry per
// conversation, written on every inbound event, read by the outbox and the
// HTTP API to turn a conversation id into a platform address. It lives in
// the KV bucket parley_directory_<region>, keyed by conversation id.
//
// Invariants:
//
//   - Every write is a compare-and-set at the revision it was computed
//     from, so writers on several instances never lose each other's
//     fields, and LastInboundAt never moves backwards.
//   - A Store caches the last entry it read or wrote per conversation, with
//     its revision (bounded, least recently used out). The cache only saves
//     reads: a write computed from a stale cached entry is refused by the
//     server, and the writer re-reads. Get always reads the bucket.
//   - Entries are never deleted. An event that changes nothing in the
//     cached entry writes nothing: what it would record is durable already,
//     at the cached revision or (LastInboundAt only grows) superseded.
package directory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
)

// Entry is what Parley knows of one conversation. Its JSON form is the body
// of GET /v1/conversations/{id}.
type Entry struct {
	ConversationID  normalize.ConversationID   `json:"id"`
	Platform        string                     `json:"platform"`
	Connector       string                     `json:"connector"`
	Region          string                     `json:"region"`
	Account         string                     `json:"account"`
	PlatformID      string                     `json:"platform_id"`
	Kind            normalize.ConversationKind `json:"kind"`
	Title           string                     `json:"title"`
	ThreadID        string                     `json:"thread_id"`
	LastInboundAt   time.Time                  `json:"last_inbound_at"`
	WindowExpiresAt *time.Time                 `json:"window_expires_at"`
	Reachable       bool                       `json:"reachable"`
	UnreachableWhy  string                     `json:"unreachable_reason,omitempty"`
}

// Address returns where the outbox sends replies for this conversation.
func (e *Entry) Address() connectors.Address {
	return connectors.Address{
		ConversationID: e.ConversationID, Kind: e.Kind, PlatformID: e.PlatformID,
		ThreadID: e.ThreadID, Account: e.Account, LastInboundAt: e.LastInboundAt,
	}
}

// ErrUnknown is returned for a conversation the directory has never seen.
var ErrUnknown = errors.New("unknown conversation")

// Store reads and writes one region's directory. It is safe for
// concurrent use; one Store per region and process shares its cache.
type Store struct {
	kv     jetstream.KeyValue
	region string
	// subjects is the prefix of the bucket's subjects, "$KV.<bucket>.":
	// a prepared write is a plain publish there (what KeyValue.Update
	// sends), so it can share a batch with other messages.
	subjects string
	cache    *cache
}

// Option configures a Store.
type Option func(*Store)

// WithCacheSize bounds the entries the Store caches (default
// DefaultCacheSize); 0 or less disables the cache, so that every event
// reads its entry before writing it.
func WithCacheSize(n int) Option {
	return func(s *Store) { s.cache = newCache(n) }
}

// New returns the directory of a region over its KV bucket, a plain bucket
// as bus.Provision creates it (not a mirror, no JetStream domain prefix).
// It does no I/O.
func New(kv jetstream.KeyValue, region string, opts ...Option) *Store {
	s := &Store{kv: kv, region: region, subjects: "$KV." + kv.Bucket() + ".", cache: newCache(DefaultCacheSize)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Region returns the region the store belongs to.
func (s *Store) Region() string { return s.region }

// Get returns the entry of a conversation, or an error wrapping ErrUnknown.
func (s *Store) Get(ctx context.Context, id normalize.ConversationID) (*Entry, uint64, error) {
	if !normalize.ValidID("c_", string(id)) {
		return nil, 0, fmt.Errorf("conversation %q: %w", id, ErrUnknown)
	}
	kve, err := s.kv.Get(ctx, string(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, fmt.Errorf("conversation %s: %w", id, ErrUnknown)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading directory entry %s: %w", id, err)
	}
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return nil, 0, fmt.Errorf("decoding directory entry %s: %w", id, err)
	}
	s.cache.put(id, &e, kve.Revision())
	return &e, kve.Revision(), nil
}

// RecordInbound updates the entry of the event's conversation: address,
// title, last inbound time and reply window. Events without a conversation,
// and events that are not from the customer (echoes, statuses), leave the
// last inbound time alone. It reads the entry first; PrepareInbound is the
// way without that read.
func (s *Store) RecordInbound(ctx context.Context, in Inbound) error {
	ev := in.Event
	if ev == nil || ev.Data.Conversation == nil || ev.Subject == "" {
		return nil
	}
	return s.update(ctx, ev.Subject, func(e *Entry, exists bool) bool {
		return applyInbound(e, exists, in)
	})
}

// FromCustomer reports whether an event is the customer's own doing, which
// opens (or keeps open) a reply window: a message or a reaction, not an
// echo, a receipt or a status.
func FromCustomer(ev *normalize.Event) bool {
	return ev.Type.Kind() == "message" && ev.Type != normalize.TypeMessageEcho || ev.Type.Kind() == "reaction"
}

// applyInbound records in's event in e (a zero Entry when !exists) and
// reports whether e changed. It only moves LastInboundAt forward.
func applyInbound(e *Entry, exists bool, in Inbound) bool {
	ev, account := in.Event, in.Account
	d := ev.Data
	changed := !exists
	if !exists {
		*e = Entry{ConversationID: ev.Subject, Reachable: true}
	}
	set := func(dst *string, v string) {
		if v != "" && *dst != v {
			*dst, changed = v, true
		}
	}
	set(&e.Platform, d.Platform)
	set(&e.Connector, d.Connector)
	set(&e.Region, d.Region)
	set(&e.Account, account)
	set(&e.PlatformID, d.Conversation.PlatformID)
	set(&e.Title, d.Conversation.Title)
	set(&e.ThreadID, d.Conversation.ThreadID)
	if d.Conversation.Kind != "" && e.Kind != d.Conversation.Kind {
		e.Kind, changed = d.Conversation.Kind, true
	}
	if FromCustomer(ev) && ev.Time.After(e.LastInboundAt) {
		e.LastInboundAt, changed = ev.Time.UTC(), true
		if in.Window != nil {
			t := in.Window.Expires(e.LastInboundAt).UTC()
			e.WindowExpiresAt = &t
		}
		if !e.Reachable {
			// A customer who writes again can be answered again.
			e.Reachable, e.UnreachableWhy = true, ""
		}
	}
	return changed
}

// SetReachable records whether replies can reach a conversation.
func (s *Store) SetReachable(ctx context.Context, id normalize.ConversationID, reachable bool, reason string) error {
	return s.update(ctx, id, func(e *Entry, exists bool) bool {
		if !exists {
			return false
		}
		if e.Reachable == reachable && e.UnreachableWhy == reason {
			return false
		}
		e.Reachable = reachable
		e.UnreachableWhy = ""
		if !reachable {
			e.UnreachableWhy = reason
		}
		return true
	})
}

// update applies fn with optimistic concurrency, retrying on a concurrent
// write so two instances recording the same conversation never lose a field.
func (s *Store) update(ctx context.Context, id normalize.ConversationID, fn func(e *Entry, exists bool) bool) error {
	for attempt := 0; attempt < 10; attempt++ {
		e, rev, err := s.Get(ctx, id)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrUnknown) {
			return err
		}
		if e == nil {
			e = &Entry{}
		}
		if !fn(e, exists) {
			return nil
		}
		b, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("encoding directory entry %s: %w", id, err)
		}
		var newRev uint64
		if exists {
			newRev, err = s.kv.Update(ctx, string(id), b, rev)
		} else {
			newRev, err = s.kv.Create(ctx, string(id), b)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isRevisionMismatch(err) {
			s.cache.drop(id, rev)
			continue
		}
		if err != nil {
			// The write may have been stored: the cached state is unsure.
			s.cache.drop(id, rev)
			return fmt.Errorf("writing directory entry %s: %w", id, err)
		}
		s.cache.put(id, e, newRev)
		return nil
	}
	return fmt.Errorf("writing directory entry %s: too many concurrent updates", id)
}

func isRevisionMismatch(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// Inbound is one event to record, with the platform account to record for
// its conversation and the conversation's reply window (nil: none), as the
// connector's policy answers it.
type Inbound struct {
	Event   *normalize.Event
	Account string
	Window  connectors.ReplyWindow
}

// InboundWrite is the directory's share of a batch of inbound events: the
// KV writes to publish in the same bus.Publish call as the events, and what
// to do once that call returns. It is not safe for concurrent use.
type InboundWrite struct {
	s     *Store
	convs []*convWrite // in order of first appearance
	byID  map[normalize.ConversationID]*convWrite
	// slow are conversations without a prepared write although their
	// events may change them (an id that is not a valid key, an entry not
	// cached and not loaded): their events go through RecordInbound.
	slow []normalize.ConversationID
	// writes are the conversations of Messages, in the same order.
	writes []*convWrite
}

// convWrite is the prepared compare-and-set of one conversation.
type convWrite struct {
	id    normalize.ConversationID
	recs  []Inbound
	known bool   // entry and rev are the stored state: cached or loaded
	entry Entry  // the entry to write once the events are applied
	rev   uint64 // the revision entry was computed from; 0: no entry yet
}

// PrepareInbound computes, without I/O, the directory writes of a batch of
// events. Events of one conversation are applied in order to one entry, so
// each conversation gets at most one write; a conversation whose entry the
// events do not change gets none (an older or repeated event, a
// same-second message, a status). Conversations not in the cache get a
// write only after Load.
//
// The writes are Conditional messages expecting the revision they were
// computed from, so a concurrent writer on another instance makes them
// fail instead of being overwritten; hand the results to Settle.
func (s *Store) PrepareInbound(recs []Inbound) *InboundWrite {
	byID := make(map[normalize.ConversationID]*convWrite, len(recs))
	w := &InboundWrite{s: s, byID: byID}
	for _, r := range recs {
		ev := r.Event
		if ev == nil || ev.Data.Conversation == nil || ev.Subject == "" {
			continue
		}
		c := byID[ev.Subject]
		if c == nil {
			c = &convWrite{id: ev.Subject}
			byID[ev.Subject] = c
			if !normalize.ValidID("c_", string(ev.Subject)) {
				w.slow = append(w.slow, ev.Subject)
				continue
			}
			c.entry, c.rev, c.known = s.cache.get(ev.Subject)
			w.convs = append(w.convs, c)
		}
		c.recs = append(c.recs, r)
	}
	return w
}

// Missing is how many conversations of the batch are not cached.
func (w *InboundWrite) Missing() int {
	n := 0
	for _, c := range w.convs {
		if !c.known {
			n++
		}
	}
	return n
}

// Load reads the entries of the conversations that are not cached, so that
// they get a write too (a create for a new conversation). An entry it
// cannot read is left to Settle's caller, whose RecordInbound reads again
// and reports the error.
func (w *InboundWrite) Load(ctx context.Context) {
	for _, c := range w.convs {
		if c.known {
			continue
		}
		e, rev, err := w.s.Get(ctx, c.id)
		switch {
		case errors.Is(err, ErrUnknown):
			c.known = true
		case err != nil:
		default:
			c.entry, c.rev, c.known = *e, rev, true
		}
	}
}

// Messages returns the prepared KV writes, to publish in one bus.Publish
// call with the events. It may be empty. Call it once, after Load if at
// all.
func (w *InboundWrite) Messages() []bus.Message {
	var msgs []bus.Message
	for _, c := range w.convs {
		if !c.known {
			w.slow = append(w.slow, c.id)
			continue
		}
		changed := false
		for _, r := range c.recs {
			if applyInbound(&c.entry, c.rev != 0 || changed, r) {
				changed = true
			}
		}
		if !changed {
			continue
		}
		data, err := json.Marshal(&c.entry)
		if err != nil {
			w.slow = append(w.slow, c.id) // RecordInbound reports it
			continue
		}
		w.writes = append(w.writes, c)
		msgs = append(msgs, w.s.casMessage(c.id, c.rev, data))
	}
	return msgs
}

// casMessage is what KeyValue.Update(id, data, rev) publishes (Create for
// rev 0), as a bus message. The msg id names the content and the revision
// it expects: the stream never drops a different write as a duplicate of
// this one (a clustered stream checks duplicates before the condition),
// and a duplicate of this very write means it is stored.
func (s *Store) casMessage(id normalize.ConversationID, rev uint64, data []byte) bus.Message {
	sum := sha256.Sum256(data)
	revStr := strconv.FormatUint(rev, 10)
	return bus.Message{
		Subject: s.subjects + string(id),
		MsgID:   "dir:" + string(id) + ":" + revStr + ":" + hex.EncodeToString(sum[:16]),
		Data:    data,
		Header: nats.Header{
			jetstream.ExpectedLastSubjSeqHeader: []string{revStr},
			"Content-Type":                      []string{"application/json"},
		},
		Conditional: true,
	}
}

// WindowExpiresAt returns the reply window of a conversation of the batch
// as its entry records it once the batch's events are applied, and whether
// the entry is known (cached or loaded); call it after Messages.
func (w *InboundWrite) WindowExpiresAt(id normalize.ConversationID) (*time.Time, bool) {
	if c := w.byID[id]; c != nil {
		return c.entry.WindowExpiresAt, c.known
	}
	return nil, false
}

// Settle takes the results of publishing Messages, in the same order
// (fewer, or none, when the call failed), updates the cache, and returns
// the conversations whose record is not known to be durable: each write
// that was refused or not acknowledged, and each conversation that got no
// write although its events may change it. Call RecordInbound for their
// events, in order, before acknowledging them.
func (w *InboundWrite) Settle(results []bus.PubResult) []normalize.ConversationID {
	retry := w.slow
	for i, c := range w.writes {
		if i < len(results) && results[i].Err == nil && results[i].Sequence != 0 {
			w.s.cache.put(c.id, &c.entry, results[i].Sequence)
			continue
		}
		// Refused (another writer moved the entry on) or unknown: the
		// cached state can no longer be written from.
		w.s.cache.drop(c.id, c.rev)
		retry = append(retry, c.id)
	}
	return retry
}
