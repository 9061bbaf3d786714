package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ContentTypeCloudEvents is the Content-Type Publish sets unless the message
// has one: Parley's bodies are structured-mode CloudEvents JSON.
const ContentTypeCloudEvents = "application/cloudevents+json"

// ErrNotDurable is wrapped by every error of [Bus.Publish]: at least one
// message has no PubAck, so nothing may be acknowledged to its sender. The
// cause (context end, disconnect, a server rejection) is wrapped too.
var ErrNotDurable = errors.New("not durable")

// ErrInvalidMessage is wrapped (beside ErrNotDurable) when a message cannot
// be published at all: no subject, no msg id, or rejected by the server
// (over max payload, say). Retrying it does not help.
var ErrInvalidMessage = errors.New("invalid message")

// Message is one message for [Bus.Publish].
type Message struct {
	Subject string
	// MsgID becomes Nats-Msg-Id: the dedupe key, required.
	MsgID string
	Data  []byte
	// Header is copied, never modified. Content-Type defaults to
	// application/cloudevents+json.
	Header nats.Header
	// Conditional marks a message guarded by a Nats-Expected-* header (a
	// compare-and-set, such as a KV update at a known revision), whose
	// rejection is an answer, not a failure. When the server or the client
	// refuses it for good (a failed condition, any other 4xx), Publish does
	// not retry it and does not fail the call: the refusal is its
	// PubResult.Err, and the call still waits for every other message. A
	// refusal after a re-publish (a lost ack) may mean that an earlier
	// attempt was stored: the caller re-reads before it concludes anything.
	Conditional bool
}

// PubResult is the stream's acknowledgement of one message.
type PubResult struct {
	Stream   string
	Sequence uint64
	// Duplicate is true when the stream already held this MsgID (inside its
	// dedupe window) and did not store it again. A re-publish inside one
	// Publish call after a lost ack also reports Duplicate.
	Duplicate bool
	// Err is the refusal of a Conditional message, wrapping ErrNotDurable,
	// ErrInvalidMessage and the cause (a *jetstream.APIError for a server
	// rejection). It is nil for every message of a call that returned nil,
	// except refused Conditional ones.
	Err error
}

// Publish stores msgs in JetStream and returns once every one of them is
// acknowledged, with results in input order. Messages are published
// asynchronously and each one whose ack fails (disconnect, timeout, no
// responders) is published again with the same Nats-Msg-Id, with a short
// backoff, until ctx ends: a message is never stored twice, and nil means all
// are stored — but for Conditional messages the server refused, whose
// refusal is their PubResult.Err.
//
// Publish does not hang on a dead connection: a closed connection fails at
// once, and a connection that stays down (not connected) for longer than
// Options.PublishTimeout during the call fails even when ctx allows longer.
// Every error wraps [ErrNotDurable]; results then hold a zero PubResult for
// each message that was not acknowledged.
func (b *Bus) Publish(ctx context.Context, msgs ...Message) ([]PubResult, error) {
	if len(msgs) == 0 {
		return nil, nil
	}
	prepared := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		nm, err := prepare(m)
		if err != nil {
			return nil, fmt.Errorf("%w: message %d: %w", ErrNotDurable, i, err)
		}
		prepared[i] = nm
	}
	var conditional []bool
	for i, m := range msgs {
		if m.Conditional {
			if conditional == nil {
				conditional = make([]bool, len(msgs))
			}
			conditional[i] = true
		}
	}
	results := make([]PubResult, len(msgs))
	if len(msgs) == 1 {
		return results, b.publishSyncCond(ctx, prepared[0], conditional != nil, &results[0])
	}
	return results, b.publishAsyncCond(ctx, prepared, conditional, results)
}

// refused is the PubResult.Err of a Conditional message refused for good.
func refused(subject string, err error) error {
	return fmt.Errorf("%w: %w: %s: %w", ErrNotDurable, ErrInvalidMessage, subject, err)
}

func prepare(m Message) (*nats.Msg, error) {
	if m.Subject == "" {
		return nil, fmt.Errorf("%w: no subject", ErrInvalidMessage)
	}
	if m.MsgID == "" {
		return nil, fmt.Errorf("%w: %s: no msg id", ErrInvalidMessage, m.Subject)
	}
	h := make(nats.Header, len(m.Header)+2)
	for k, v := range m.Header {
		h[k] = append([]string(nil), v...)
	}
	h.Set(jetstream.MsgIDHeader, m.MsgID)
	if !hasHeader(h, "Content-Type") {
		h.Set("Content-Type", ContentTypeCloudEvents)
	}
	return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}, nil
}

// hasHeader looks a header up case-insensitively: nats.Header is not
// canonicalised, and other clients write "content-type".
func hasHeader(h nats.Header, key string) bool {
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return true
		}
	}
	return false
}

// attempts paces the retries of one Publish call and decides when to give up.
type attempts struct {
	b         *Bus
	ctx       context.Context
	bo        backoff.BackOff
	downSince time.Time
	lastErr   error
}

func (b *Bus) newAttempts(ctx context.Context) *attempts {
	return &attempts{
		b:   b,
		ctx: ctx,
		bo: backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(20*time.Millisecond),
			backoff.WithMaxInterval(500*time.Millisecond),
			backoff.WithMaxElapsedTime(0), // ctx and the outage budget decide
		),
	}
}

// check says whether another attempt may start now.
func (a *attempts) check() error {
	if err := a.ctx.Err(); err != nil {
		return a.giveUp(context.Cause(a.ctx))
	}
	nc := a.b.nc
	if nc.IsClosed() {
		return nats.ErrConnectionClosed
	}
	if nc.IsConnected() {
		a.downSince = time.Time{}
		return nil
	}
	now := time.Now()
	if a.downSince.IsZero() {
		a.downSince = now
	} else if now.Sub(a.downSince) >= a.b.opts.PublishTimeout {
		return a.giveUp(fmt.Errorf("nats connection %s for %s", strings.ToLower(nc.Status().String()), now.Sub(a.downSince).Round(time.Millisecond)))
	}
	return nil
}

func (a *attempts) giveUp(why error) error {
	if a.lastErr != nil && !errors.Is(why, a.lastErr) {
		return fmt.Errorf("%w (last error: %w)", why, a.lastErr)
	}
	return why
}

// pause sleeps before the next attempt; it returns an error when ctx ends.
func (a *attempts) pause() error {
	t := time.NewTimer(a.bo.NextBackOff())
	defer t.Stop()
	select {
	case <-a.ctx.Done():
		return a.giveUp(context.Cause(a.ctx))
	case <-t.C:
		return nil
	}
}

// attemptCtx bounds one attempt by PublishTimeout within ctx.
func (a *attempts) attemptCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(a.ctx, a.b.opts.PublishTimeout)
}

func notDurable(unacked, total int, cause error) error {
	return fmt.Errorf("%w: %d of %d messages unacknowledged: %w", ErrNotDurable, unacked, total, cause)
}

// publishSync is the path for one message: one request, one reply.
func (b *Bus) publishSync(ctx context.Context, m *nats.Msg, res *PubResult) error {
	return b.publishSyncCond(ctx, m, false, res)
}

// publishSyncCond is publishSync for a message that may be Conditional.
func (b *Bus) publishSyncCond(ctx context.Context, m *nats.Msg, conditional bool, res *PubResult) error {
	a := b.newAttempts(ctx)
	for {
		if err := a.check(); err != nil {
			return notDurable(1, 1, err)
		}
		actx, cancel := a.attemptCtx()
		ack, err := b.js.PublishMsg(actx, m)
		cancel()
		if err == nil {
			*res = PubResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
			return nil
		}
		if permanentPublishError(err) {
			if conditional {
				*res = PubResult{Err: refused(m.Subject, err)}
				return nil
			}
			return notDurable(1, 1, fmt.Errorf("%w: %s: %w", ErrInvalidMessage, m.Subject, err))
		}
		a.lastErr = err
		if err := a.pause(); err != nil {
			return notDurable(1, 1, err)
		}
	}
}

// publishAsync pipelines every message and re-publishes those whose ack
// failed, until all are acknowledged.
func (b *Bus) publishAsync(ctx context.Context, msgs []*nats.Msg, results []PubResult) error {
	return b.publishAsyncCond(ctx, msgs, nil, results)
}

// publishAsyncCond is publishAsync where conditional[i] (nil: none) marks
// the Conditional messages: their refusal goes to results[i].Err.
func (b *Bus) publishAsyncCond(ctx context.Context, msgs []*nats.Msg, conditional []bool, results []PubResult) error {
	isCond := func(i int) bool { return conditional != nil && conditional[i] }
	a := b.newAttempts(ctx)
	pending := make([]int, len(msgs))
	for i := range pending {
		pending[i] = i
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for {
		if err := a.check(); err != nil {
			return notDurable(len(pending), len(msgs), err)
		}
		for _, i := range pending {
			f, err := b.js.PublishMsgAsync(msgs[i])
			if err != nil {
				if permanentPublishError(err) && isCond(i) {
					results[i] = PubResult{Err: refused(msgs[i].Subject, err)}
					futures[i] = nil
					continue
				}
				if permanentPublishError(err) {
					return notDurable(len(pending), len(msgs), fmt.Errorf("%w: %s: %w", ErrInvalidMessage, msgs[i].Subject, err))
				}
				a.lastErr = err
			}
			futures[i] = f
		}

		// The client times every future out after PublishTimeout (and fails
		// them on reconnect); this timer only guards against a future that
		// is never resolved, e.g. when the connection closes.
		guard := time.NewTimer(b.opts.PublishTimeout + 500*time.Millisecond)
		failed := pending[:0:0]
		var expired bool
		for _, i := range pending {
			f := futures[i]
			futures[i] = nil
			if results[i].Err != nil {
				continue // a Conditional message refused by the client
			}
			if f == nil || expired {
				failed = append(failed, i)
				continue
			}
			select {
			case ack := <-f.Ok():
				results[i] = PubResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
			case err := <-f.Err():
				if permanentPublishError(err) && isCond(i) {
					results[i] = PubResult{Err: refused(msgs[i].Subject, err)}
					continue
				}
				if permanentPublishError(err) {
					guard.Stop()
					return notDurable(len(pending), len(msgs), fmt.Errorf("%w: %s: %w", ErrInvalidMessage, msgs[i].Subject, err))
				}
				a.lastErr = err
				failed = append(failed, i)
			case <-guard.C:
				a.lastErr = jetstream.ErrAsyncPublishTimeout
				expired = true
				failed = append(failed, i)
			case <-ctx.Done():
				guard.Stop()
				return notDurable(len(pending), len(msgs), a.giveUp(context.Cause(ctx)))
			}
		}
		guard.Stop()
		if len(failed) == 0 {
			return nil
		}
		b.log.Debug("re-publishing unacknowledged messages", "count", len(failed), "error", a.lastErr)
		pending = failed
		if err := a.pause(); err != nil {
			return notDurable(len(pending), len(msgs), err)
		}
	}
}

// permanentPublishError reports errors that the same message will meet again:
// the client refused it, or the stream rejected it (4xx other than a
// conflict that resolves itself).
func permanentPublishError(err error) bool {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) ||
		errors.Is(err, nats.ErrInvalidMsg) || errors.Is(err, nats.ErrBadHeaderMsg) ||
		errors.Is(err, jetstream.ErrAsyncPublishReplySubjectSet) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 {
		return apiErr.Code != 408 && apiErr.Code != 409
	}
	return false
}
