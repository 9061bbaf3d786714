// Package directory is the conversation directory: one entry per
// conversation, written on every inbound event, read by the outbox and the
// HTTP API to turn a conversation id into a platform address. It lives in
// the KV bucket parley_directory_<region>, keyed by conversation id.
package directory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
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
		ThreadID: e.ThreadID, Account: e.Account,
	}
}

// ErrUnknown is returned for a conversation the directory has never seen.
var ErrUnknown = errors.New("unknown conversation")

// Store reads and writes one region's directory.
type Store struct {
	kv     jetstream.KeyValue
	region string
}

// New returns the directory of a region over its KV bucket.
func New(kv jetstream.KeyValue, region string) *Store { return &Store{kv: kv, region: region} }

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
	return &e, kve.Revision(), nil
}

// RecordInbound updates the entry of the event's conversation: address,
// title, last inbound time and reply window. window is the platform's reply
// window (0: none). Events without a conversation, and events that are not
// from the customer (echoes, statuses), leave the last inbound time alone.
func (s *Store) RecordInbound(ctx context.Context, ev *normalize.Event, account string, window time.Duration) error {
	d := ev.Data
	if d.Conversation == nil || ev.Subject == "" {
		return nil
	}
	fromCustomer := ev.Type.Kind() == "message" && ev.Type != normalize.TypeMessageEcho || ev.Type.Kind() == "reaction"
	return s.update(ctx, ev.Subject, func(e *Entry, exists bool) bool {
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
		if fromCustomer && ev.Time.After(e.LastInboundAt) {
			e.LastInboundAt, changed = ev.Time.UTC(), true
			if window > 0 {
				t := e.LastInboundAt.Add(window)
				e.WindowExpiresAt = &t
			}
			if !e.Reachable {
				// A customer who writes again can be answered again.
				e.Reachable, e.UnreachableWhy = true, ""
			}
		}
		return changed
	})
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
		if exists {
			_, err = s.kv.Update(ctx, string(id), b, rev)
		} else {
			_, err = s.kv.Create(ctx, string(id), b)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isRevisionMismatch(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("writing directory entry %s: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("writing directory entry %s: too many concurrent updates", id)
}

func isRevisionMismatch(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}
