package kit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Update is one platform update (a webhook entry, a polled update, a socket
// event) and what it means for Parley.
type Update struct {
	// ID is the platform's id of the update, for logs ("" when it has none).
	ID string
	// Raw is the update as the platform sent it: what is dead-lettered if
	// it cannot be stored. For a webhook request of one update, the body.
	Raw []byte
	// Events are the canonical events the update maps to, in order.
	Events []*normalize.Event
	// Err is set when the update cannot be mapped: it is dead-lettered as
	// unmappable and acknowledged, never refused, or the platform would
	// redeliver it for ever and hold back what is queued behind it.
	Err error
	// Ignored names an update of a kind Parley deliberately does not map;
	// it is counted, logged at Debug and acknowledged.
	Ignored string
	// Data is the connector's own note on the update, handed back to its
	// Resolve hook (a ledger lookup to make) and After hook (a callback
	// query to answer).
	Data any
}

// Inbound stores updates for one connector: it publishes their events,
// dead-letters the ones that cannot be stored, counts them and keeps the
// connector's health in step with storage. It is safe for concurrent use.
type Inbound struct {
	deps   connectors.Deps
	health *Health
	log    *slog.Logger

	received, ignored, failed, deadLettered atomic.Uint64
}

// NewInbound returns the store step of a connector built with deps.
func NewInbound(deps connectors.Deps, health *Health) *Inbound {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Inbound{deps: deps, health: health, log: log}
}

// storageAction is the health action while events cannot be stored.
const storageAction = "check that NATS JetStream is reachable; the platform keeps its updates until they are stored"

// Store makes every update durable: its events stored, or the update itself
// kept on the inbound dead-letter subject when it cannot be (the server
// refuses its events, or it cannot be mapped). It returns nil once the
// updates may be acknowledged to the platform, and an error wrapping
// connectors.ErrNotDurable otherwise: nothing may be acknowledged then, and
// the platform's redelivery stores nothing twice.
//
// All events go in one Publish call; only when the server refuses one of
// them are the updates published one by one, to find which to keep aside.
func (in *Inbound) Store(ctx context.Context, updates []Update) error {
	var events []*normalize.Event
	var rejects []connectors.Rejected
	for i := range updates {
		u := &updates[i]
		in.received.Add(1)
		switch {
		case u.Err != nil:
			in.failed.Add(1)
			in.log.Error("keeping aside a platform update that cannot be mapped", "update_id", u.ID, "error", u.Err)
			rejects = append(rejects, connectors.Rejected{Raw: u.Raw, Reason: connectors.RejectUnmappable, Detail: u.Err.Error(), UpdateID: u.ID})
		case u.Ignored != "" && len(u.Events) == 0:
			in.ignored.Add(1)
			in.log.Debug("ignoring a platform update", "update_id", u.ID, "kind", u.Ignored)
		default:
			events = append(events, u.Events...)
		}
	}

	err := in.publish(ctx, events)
	if errors.Is(err, connectors.ErrRefused) {
		rejects, err = in.isolate(ctx, updates, rejects)
	}
	if err != nil {
		return err
	}
	for _, r := range rejects {
		if err := in.reject(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// isolate publishes the updates one at a time after a refusal and adds the
// refused ones to rejects.
func (in *Inbound) isolate(ctx context.Context, updates []Update, rejects []connectors.Rejected) ([]connectors.Rejected, error) {
	for i := range updates {
		u := &updates[i]
		if u.Err != nil || len(u.Events) == 0 {
			continue
		}
		err := in.publish(ctx, u.Events)
		if errors.Is(err, connectors.ErrRefused) {
			in.failed.Add(1)
			in.log.Error("keeping aside a platform update whose events the server refuses", "update_id", u.ID, "error", err)
			rejects = append(rejects, connectors.Rejected{Raw: u.Raw, Reason: connectors.RejectRefused, Detail: err.Error(), UpdateID: u.ID})
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	return rejects, nil
}

// publish stores events and keeps health in step with the outcome.
func (in *Inbound) publish(ctx context.Context, events []*normalize.Event) error {
	if len(events) == 0 {
		return nil
	}
	err := in.deps.Publisher.Publish(ctx, events...)
	switch {
	case err == nil:
		in.health.Storage(nil)
		return nil
	case errors.Is(err, connectors.ErrRefused):
		// The server answered: storage works.
		in.health.Storage(nil)
		return err
	}
	if ctx.Err() == nil {
		in.health.Storage(&Problem{Reason: "events cannot be stored: " + err.Error(), Action: storageAction})
	}
	if !errors.Is(err, connectors.ErrNotDurable) {
		err = fmt.Errorf("%w: %w", connectors.ErrNotDurable, err)
	}
	return err
}

// reject dead-letters one update.
func (in *Inbound) reject(ctx context.Context, r connectors.Rejected) error {
	if err := in.deps.Rejects.Reject(ctx, r); err != nil {
		if ctx.Err() == nil {
			in.health.Storage(&Problem{Reason: "updates cannot be dead-lettered: " + err.Error(), Action: storageAction})
		}
		if !errors.Is(err, connectors.ErrNotDurable) {
			err = fmt.Errorf("%w: %w", connectors.ErrNotDurable, err)
		}
		return err
	}
	in.deadLettered.Add(1)
	return nil
}

// Malformed counts an update refused as malformed (a webhook's 400).
func (in *Inbound) Malformed() {
	in.received.Add(1)
	in.failed.Add(1)
}

// Stats returns the counts so far: a connector's InboundStats method.
func (in *Inbound) Stats() connectors.InboundStats {
	return connectors.InboundStats{
		Received:     in.received.Load(),
		Ignored:      in.ignored.Load(),
		Failed:       in.failed.Load(),
		DeadLettered: in.deadLettered.Load(),
	}
}
