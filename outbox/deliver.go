package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

// youngCommand is how long after it was stored a command naming a
// conversation the directory does not know is looked at again rather than
// failed.
const youngCommand = 3 * time.Second

// delivery is one attempt at one command, from its turn to its outcome.
type delivery struct {
	o   *Outbox
	it  *item
	msg jetstream.Msg
	log *slog.Logger

	seq          uint64
	numDelivered int
	stored       time.Time
	body         []byte

	info    bus.SubjectInfo // zero when the subject is not a command subject
	replyID string
	reply   *normalize.Reply // nil when invalid
	invalid error

	marker         marker
	rev            uint64 // the marker's revision in the bucket; 0: none yet
	prevDeliveries int    // deliveries recorded before this one
	delivery       int    // this delivery's number, from 1; MaxAttempts bounds it
	tries          int    // tries of the reply so far, this one included: what status events report

	entry     *directory.Entry // nil until looked up, or when unknown
	platform  string
	connector string
	// reused is set when this command reuses the id of an earlier command
	// (at another stream sequence) that already failed: the outcome stays,
	// and its status and dead letter say why.
	reused bool
	label  string // metricLabel, once known
	// fresh is set on a first delivery, whose marker is not read: it is
	// assumed not to exist until the claim finds one.
	fresh bool
	// statusSent is set once reply.sent was stored with the last marker.
	statusSent bool
}

// deliver takes one command to its outcome. It returns with the command
// still held only when an earlier command of the conversation arrived
// while this one waited for its turn, or when Run is stopping; the worker
// then picks again.
func (o *Outbox) deliver(ctx context.Context, q *convQueue, it *item) {
	d := o.newDelivery(it)
	if d.invalid == nil && !o.waitTurn(ctx, q, d) {
		return
	}
	d.run(ctx)
}

func (o *Outbox) newDelivery(it *item) *delivery {
	msg := it.current()
	d := &delivery{o: o, it: it, msg: msg, seq: it.seq, body: msg.Data(), numDelivered: 1}
	if md, err := msg.Metadata(); err == nil {
		d.numDelivered = int(md.NumDelivered)
		d.stored = md.Timestamp
	}
	info, err := o.subj.Parse(msg.Subject())
	switch {
	case err != nil:
		d.invalid = fmt.Errorf("subject %q is not a reply command subject: %w", msg.Subject(), err)
	case info.Class != bus.ClassCommand:
		d.invalid = fmt.Errorf("subject %q is not a reply command subject", msg.Subject())
	default:
		d.info = info
		d.platform, d.connector = info.Platform, info.Connector
	}
	r, err := normalize.ParseReply(d.body)
	if err != nil {
		if d.invalid == nil {
			d.invalid = err
		}
		d.replyID = fallbackReplyID(d.body, msg, it.seq)
	} else {
		d.reply, d.replyID = r, r.ID
		if d.invalid == nil && string(r.ConversationID) != info.Conversation {
			d.invalid = &normalize.InvalidReplyError{Problems: []string{fmt.Sprintf(
				"conversation_id %s does not match the subject's conversation %s", r.ConversationID, info.Conversation)}}
		}
	}
	d.log = o.log.With("reply_id", d.replyID, "stream_seq", d.seq)
	if c := d.statusConversation(); c != "" {
		d.log = d.log.With("conversation_id", c)
	}
	return d
}

// fallbackReplyID names a command whose body has no usable id: the id in
// the body if it is well-formed, else the replay or publish headers, else
// its stream sequence.
func fallbackReplyID(body []byte, msg jetstream.Msg, seq uint64) string {
	var partial struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(body, &partial) == nil {
		if s, ok := partial.ID.(string); ok && normalize.ValidReplyID(s) {
			return s
		}
	}
	if h := msg.Headers(); h != nil {
		if s := h.Get(HeaderReplyID); normalize.ValidReplyID(s) {
			return s
		}
		if s := h.Get(jetstream.MsgIDHeader); normalize.ValidReplyID(s) {
			return s
		}
	}
	return "seq-" + strconv.FormatUint(seq, 10)
}

// waitTurn blocks while an earlier command of the same conversation is
// still in the stream but not in this owner's memory: held by the previous
// owner of the partition, handed back with NakWithDelay, or not yet
// redelivered after a crash. The stream is asked once per conversation and
// ownership, and again only after one of the conversation's commands went
// back to it; otherwise the queue in memory is the order. It returns false
// when this command is no longer the head of its queue or the partition is
// stopping.
func (o *Outbox) waitTurn(ctx context.Context, q *convQueue, d *delivery) bool {
	if q.p.isVerified(q.key) {
		return true
	}
	poll := turnPollMin
	for {
		earlier, complete, err := o.earlierPending(ctx, q.p, d)
		if err == nil && earlier == 0 {
			if complete {
				q.p.setVerified(q.key)
			}
			return true
		}
		if err != nil {
			d.log.Debug("cannot check earlier commands of the conversation", "error", err)
		} else {
			d.log.Debug("waiting for an earlier command of the conversation", "earlier_seq", earlier)
		}
		t := time.NewTimer(poll)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return false
			case <-q.notify:
				if !o.isHead(q, d.it) {
					t.Stop()
					return false
				}
			case <-q.recheck:
				t.Stop()
				poll = turnPollMin / 2 // the next wait starts short again
				break wait
			case <-t.C:
				break wait
			}
		}
		poll = min(poll*2, turnPollMax)
	}
}

// earlierPending scans the conversation's commands in the stream, in
// order, up to the later of d's sequence and the last one delivered before
// this ownership began. It returns the sequence of one earlier than d
// still in the stream (d must wait for it, or give way to it once it is
// queued here), or 0; complete is true
// when every command up to that bound is held here or settled, so that no
// command of the previous ownership can still come back between later
// ones. Commands this process settled moments ago are skipped: on a
// cluster their removal trails the ack.
func (o *Outbox) earlierPending(ctx context.Context, p *partition, d *delivery) (uint64, bool, error) {
	// Any platform and connector token: the conversation id is global.
	filter := d.info.Prefix + "." + bus.ClassCommand + "." + d.info.Region + ".*.*." + d.info.Conversation + "." + bus.CommandKind
	o.mu.Lock()
	bound := max(p.delivered, d.seq-1)
	o.mu.Unlock()
	complete := true
	start := uint64(1)
	for range 4 * maxHeldPerConversation {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		m, err := o.opts.Handles.Commands.GetMsg(gctx, start, jetstream.WithGetMsgSubject(filter))
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, complete, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("looking up earlier commands: %w", err)
		}
		if m.Sequence > bound {
			return 0, complete, nil
		}
		start = m.Sequence + 1
		if m.Sequence == d.seq || o.recentlySettled(m.Sequence) {
			continue
		}
		if m.Sequence < d.seq {
			// Elsewhere, or arrived here meanwhile and queued ahead of d:
			// either way d is not next.
			return m.Sequence, false, nil
		}
		if p.holds(m.Sequence) {
			continue
		}
		// Later than d but from the previous ownership: d may go, the
		// next command must look again.
		complete = false
	}
	if start <= d.seq {
		return 0, false, errors.New("looking up earlier commands: too many held by other instances")
	}
	return 0, false, nil
}

// run decides and carries out the outcome of the command.
func (d *delivery) run(ctx context.Context) {
	o := d.o
	var m marker
	var rev uint64
	var err error
	o.mu.Lock()
	_, unsaved := o.unsaved[d.replyID]
	o.mu.Unlock()
	_, parked := d.msg.(*parkedMsg)
	if d.numDelivered == 1 && !parked && !unsaved {
		// A first delivery has no marker, but for a reused reply id: the
		// claim, a create, finds out without a read first.
		d.fresh = true
	} else {
		m, rev, err = o.loadMarker(ctx, d.replyID)
	}
	if err != nil && ctx.Err() != nil {
		d.handBack()
		return
	}
	if err != nil && d.invalid == nil {
		// Sending without knowing what was sent could send twice.
		d.log.Warn("outbox cannot read the sent-marker; retrying later", "error", err)
		d.release(o.opts.RetryBase)
		return
	}
	d.marker, d.rev = m, rev
	d.prevDeliveries = m.Deliveries
	d.delivery = o.deliveryNumber(m.Deliveries, d.numDelivered)
	d.tries = m.Attempts + 1

	switch {
	case m.Done:
		d.succeed(ctx, false)
		return
	case m.Failed != nil && m.Failed.Seq != 0 && m.Failed.Seq != d.seq:
		f := *m.Failed
		f.Message = fmt.Sprintf("reply id %s was already used by an earlier command (stream sequence %d) that failed with %s: %s; a reply id is an idempotency key, so that outcome stands: send a new reply with a new id",
			d.replyID, m.Failed.Seq, m.Failed.Code, m.Failed.Message)
		d.reused = true
		d.fail(ctx, f)
		return
	case m.Failed != nil:
		d.fail(ctx, *m.Failed)
		return
	case d.invalid != nil:
		d.fail(ctx, failure{Code: normalize.ErrInvalidReply, Message: d.invalid.Error()})
		return
	}
	r := d.reply
	if r.NotAfter != nil && o.opts.Now().After(*r.NotAfter) {
		d.fail(ctx, failure{Code: normalize.ErrExpired, Message: "not_after " + r.NotAfter.UTC().Format(time.RFC3339) + " has passed"})
		return
	}

	gctx, cancel := context.WithTimeout(ctx, finishTimeout)
	entry, _, err := o.opts.Directory.Get(gctx, r.ConversationID)
	cancel()
	switch {
	case errors.Is(err, directory.ErrUnknown) && o.sinceStored(d.stored) < youngCommand:
		// Published right after the conversation's first event, whose
		// directory write may land a moment later: look again shortly,
		// without counting an attempt.
		d.release(250 * time.Millisecond)
		return
	case errors.Is(err, directory.ErrUnknown):
		d.fail(ctx, failure{Code: normalize.ErrUnknownConversation, Message: "conversation " + string(r.ConversationID) + " is not in the directory"})
		return
	case err != nil && ctx.Err() != nil:
		d.handBack()
		return
	case err != nil:
		d.log.Warn("outbox cannot read the conversation directory; retrying later", "error", err)
		d.release(o.opts.RetryBase)
		return
	}
	d.entry = entry
	if entry.Platform != "" && entry.Connector != "" {
		d.platform, d.connector = entry.Platform, entry.Connector
	}
	if !entry.Reachable {
		why := entry.UnreachableWhy
		if why == "" {
			why = "the recipient cannot be reached"
		}
		d.fail(ctx, failure{Code: normalize.ErrRecipientUnavailable, Message: why})
		return
	}

	tgt, ok := o.opts.Lookup(d.connector)
	d.setLabel(ok)
	if !ok {
		// Another instance, or this one after a restart, may run it.
		d.retryLater(ctx, &connectors.Error{
			Class: connectors.ClassTransient, Code: normalize.ErrPlatformError,
			Err: fmt.Errorf("connector %s not running", d.connector),
		}, o.backoffDelay(d.delivery))
		return
	}
	if tgt.Standby {
		// The instance holding the connector's session sends; trying here
		// proves nothing, so it costs no attempt.
		d.log.Debug("handing a reply to the instance holding the connector's session")
		d.release(standbyDelay)
		return
	}
	addr := entry.Address()
	policy := tgt.Sender.Policy(addr)
	var adm connectors.Admission
	if policy.Window != nil {
		if adm, err = policy.Window.Admit(r, entry.LastInboundAt, o.opts.Now()); err != nil {
			d.fail(ctx, classifiedFailure(err, normalize.ErrWindowClosed))
			return
		}
	}

	parts, err := tgt.Sender.Plan(r, addr, adm)
	if err != nil {
		d.fail(ctx, classifiedFailure(err, normalize.ErrUnsupported))
		return
	}
	if len(parts) == 0 {
		d.fail(ctx, failure{Code: normalize.ErrUnsupported, Message: "the connector renders this reply as nothing to send"})
		return
	}
	d.send(ctx, tgt, addr, policy.Limits, parts)
}

// classifiedFailure is the terminal failure of a connector's refusal to
// admit or plan a reply; code is used when the error carries none.
func classifiedFailure(err error, code normalize.ErrorCode) failure {
	f := failure{Code: code, Message: err.Error()}
	var ce *connectors.Error
	if errors.As(err, &ce) {
		if ce.Code != "" {
			f.Code = ce.Code
		}
		f.PlatformCode = ce.PlatformCode
		f.Message = errMessage(ce)
	}
	return f
}

// send sends the parts not yet sent, in order, retrying in-process within
// the InProcessRetry budget, then durably.
func (d *delivery) send(ctx context.Context, tgt Target, addr connectors.Address, limits connectors.Limits, parts []connectors.Part) {
	o := d.o
	conv := d.it.queueKey
	account := "account\x00" + d.connector + "\x00" + limits.Account // a pacer key no conversation token can be
	gap := limits.Interval
	lim := o.limiter(d.connector, limits)
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(o.opts.InProcessRetry),
		backoff.WithMaxElapsedTime(0), // the budget below decides
	)
	var waited time.Duration // in-process retry waits spent by this delivery

	for i := len(d.marker.PlatformIDs); i < len(parts); i++ {
		for {
			if !o.pacer.wait(ctx, conv) || !o.pacer.wait(ctx, account) {
				d.handBack()
				return
			}
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					d.handBack()
					return
				}
			}
			if err := o.acquire(ctx); err != nil {
				d.handBack()
				return
			}
			if !d.claim(ctx, i) {
				o.release()
				return
			}
			// The send finishes even when Run stops: its outcome must be
			// recorded, not guessed at after a redelivery.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
			sent, err := tgt.Sender.SendPart(sctx, addr, parts[i])
			cancel()
			o.release()
			if gap > 0 {
				o.pacer.notBefore(conv, time.Now().Add(gap))
			}

			o.obs.Send(d.metricLabel(), limits.Account, sendOutcome(err))
			if err == nil {
				d.marker.PlatformIDs = append(d.marker.PlatformIDs, sent.PlatformID)
				d.record()
				d.marker.Done = len(d.marker.PlatformIDs) >= len(parts)
				batch := d.ledgerMessages(i, sent.PlatformID)
				if d.marker.Done {
					// reply.sent in the same pipelined batch as the marker
					// that says so: one round trip for both. The command is
					// acked only once both are stored.
					if st, err := d.statusMessage(normalize.TypeReplySent, "sent", d.sentStatus()); err == nil && st != nil {
						batch = append(batch, *st)
						d.statusSent = true
					}
				}
				if !d.saveMarker(ctx, batch...) {
					d.log.Warn("outbox cannot record a sent part; retrying later", "part", i)
					d.release(o.opts.RetryBase)
					return
				}
				if o.afterPart != nil {
					if err := o.afterPart(d.replyID, i); err != nil {
						o.untrack(d.it) // a crash: no ack, no nak
						return
					}
				}
				if !d.marker.Done && ctx.Err() != nil {
					d.handBack() // stopping between parts: the rest goes elsewhere
					return
				}
				bo.Reset()
				break
			}

			// The platform answered no: the part is known not sent, so
			// the claim goes at once, or an instance taking over after a
			// stop would wait out a claim on nothing.
			d.clearClaim(ctx)
			ce := connectors.Classify(err)
			d.log.Debug("send failed", "part", i, "class", ce.Class, "platform_code", ce.PlatformCode, "error", err)
			switch ce.Class {
			case connectors.ClassPermanent:
				code := ce.Code
				if code == "" {
					code = normalize.ErrPlatformError
				}
				if code == normalize.ErrRecipientUnavailable {
					d.markUnreachable(ctx, errMessage(ce))
				}
				d.fail(ctx, failure{Code: code, PlatformCode: ce.PlatformCode, Message: errMessage(ce)})
				return
			case connectors.ClassRetryAfter:
				wait := ce.RetryAfter
				if wait <= 0 {
					wait = time.Second
				}
				o.pacer.notBefore(conv, time.Now().Add(wait))
				if ce.Scope == connectors.ScopeAccount {
					// Every conversation of the account waits as long.
					o.pacer.notBefore(account, time.Now().Add(wait))
				}
				if ctx.Err() == nil && waited+wait <= o.opts.InProcessRetry {
					o.obs.Retried(d.metricLabel(), ce.Class)
					waited += wait
					d.tries++
					if !kit.Sleep(ctx, wait) {
						d.release(wait) // the hint still holds for the next instance
						return
					}
					continue
				}
				d.retryLater(ctx, ce, wait)
				return
			default:
				next := bo.NextBackOff()
				if ctx.Err() == nil && next != backoff.Stop && waited+next <= o.opts.InProcessRetry {
					o.obs.Retried(d.metricLabel(), ce.Class)
					waited += next
					d.tries++
					if !kit.Sleep(ctx, next) {
						d.handBack()
						return
					}
					continue
				}
				d.retryLater(ctx, ce, o.backoffDelay(d.delivery))
				return
			}
		}
	}
	if d.statusSent {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
		d.sent(fctx, true)
		return
	}
	d.succeed(ctx, true)
}

// sendOutcome names the outcome of one SendPart call for metrics.
func sendOutcome(err error) string {
	if err == nil {
		return "sent"
	}
	switch connectors.Classify(err).Class {
	case connectors.ClassRetryAfter:
		return "rate_limited"
	case connectors.ClassPermanent:
		return "failed"
	}
	return "retry"
}

// ledgerMessages records part i, sent as platformID, in the reply ledger.
func (d *delivery) ledgerMessages(i int, platformID string) []bus.Message {
	if d.o.opts.Ledger == nil || platformID == "" {
		return nil
	}
	msgs, err := d.o.opts.Ledger.Messages(d.connector, connectors.SentMessage{
		PlatformID: platformID, ReplyID: d.replyID, Part: i, ConversationID: d.reply.ConversationID, SentAt: time.Now().UTC(),
	})
	if err != nil {
		d.log.Warn("outbox cannot record a sent part in the ledger", "part", i, "error", err)
		return nil
	}
	return msgs
}

// markUnreachable records on the conversation that replies cannot reach
// it, so the next ones fail fast until the customer writes again. It is
// best effort: the reply fails either way.
func (d *delivery) markUnreachable(ctx context.Context, reason string) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := d.o.opts.Directory.SetReachable(fctx, d.reply.ConversationID, false, reason); err != nil {
		d.log.Warn("outbox cannot record an unreachable conversation", "error", err)
	}
}

// deliveryNumber numbers a delivery from the deliveries recorded in the
// sent-marker, which survive restarts and count only deliveries that
// tried (not the redeliveries of commands that merely waited for their
// turn or were handed back at shutdown). NumDelivered is the safety net: a
// command redelivered many more times than it has recorded keeps crashing
// or losing its marker writes, so it is treated as out of attempts and
// dead-lettered at its next retryable failure instead of looping for ever.
func (o *Outbox) deliveryNumber(recorded, numDelivered int) int {
	n := recorded + 1
	if unrecorded := numDelivered - 1 - recorded; unrecorded > 100*o.opts.MaxAttempts {
		n = max(n, o.opts.MaxAttempts)
	}
	return n
}

// record copies this delivery's counts into the marker before a write.
func (d *delivery) record() {
	d.marker.Attempts = d.tries
	d.marker.Deliveries = d.delivery
}

// backoffDelay is the durable retry delay after attempt n:
// RetryBase*2^(n-1), jittered by ±20%, capped at RetryMax.
func (o *Outbox) backoffDelay(n int) time.Duration {
	delay := o.opts.RetryBase
	for i := 1; i < n && delay < o.opts.RetryMax; i++ {
		delay *= 2
	}
	delay = min(delay, o.opts.RetryMax)
	jittered := time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
	return min(jittered, o.opts.RetryMax)
}

// retryLater hands the command back to the stream for a durable retry
// after delay, or dead-letters it when its attempts are used up.
func (d *delivery) retryLater(ctx context.Context, ce *connectors.Error, delay time.Duration) {
	o := d.o
	// A platform's retry-after is pacing, not a failure: it costs the
	// reply no attempt. RateLimitedFor bounds how long it may go on.
	throttled := ce.Class == connectors.ClassRetryAfter
	switch {
	case throttled && !d.stored.IsZero() && o.sinceStored(d.stored) > o.opts.RateLimitedFor:
		d.fail(ctx, failure{Code: normalize.ErrRateLimited, PlatformCode: ce.PlatformCode,
			Message: fmt.Sprintf("%s (still rate limited %s after the reply was stored; gave up after %d tries)",
				errMessage(ce), o.opts.RateLimitedFor, d.tries)})
		return
	case !throttled && d.delivery >= o.opts.MaxAttempts:
		d.fail(ctx, failure{Code: normalize.ErrPlatformError, PlatformCode: ce.PlatformCode,
			Message: fmt.Sprintf("%s (gave up after %d tries in %d deliveries)", errMessage(ce), d.tries, d.delivery)})
		return
	}
	if throttled {
		d.delivery--
	}
	o.obs.Retried(d.metricLabel(), ce.Class)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	d.record()
	if !d.saveMarker(fctx) {
		d.log.Warn("outbox cannot record the attempt count")
	}
	if err := putHold(fctx, o.kv, d.it.queueKey, d.seq); err != nil {
		d.log.Warn("outbox cannot record the conversation hold", "error", err)
	}
	d.it.p.unverify(d.it.queueKey)
	if err := d.msg.NakWithDelay(delay); err != nil {
		// Without the nak the command comes back after AckWait instead.
		d.log.Warn("outbox cannot nak a command", "error", err)
	}
	o.untrack(d.it)
	d.requeue(delay)
	d.log.Debug("retrying later", "attempt", d.tries, "delivery", d.delivery, "retry_in", delay, "class", ce.Class, "error", errMessage(ce))
}

// handBack returns the command to the stream because Run is stopping;
// another instance (or this one after a restart) takes it shortly.
func (d *delivery) handBack() { d.release(handBackDelay) }

// release hands the command back without counting an attempt: Run is
// stopping, or NATS itself is in trouble.
func (d *delivery) release(delay time.Duration) {
	d.clearClaim(context.Background())
	d.it.p.unverify(d.it.queueKey)
	var err error
	if delay > 0 {
		err = d.msg.NakWithDelay(delay)
	} else {
		err = d.msg.Nak()
	}
	if err != nil {
		d.log.Debug("outbox cannot nak a command; it returns after ack wait", "error", err)
	}
	d.o.untrack(d.it)
	d.requeue(delay)
}

// succeed reports reply.sent, then acks. fresh is false when an earlier
// delivery already sent every part and only the status and ack are missing.
func (d *delivery) succeed(ctx context.Context, fresh bool) {
	o := d.o
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if err := d.publishStatus(fctx, normalize.TypeReplySent, "sent", d.sentStatus()); err != nil {
		d.log.Warn("outbox cannot publish reply.sent; retrying later", "error", err)
		d.release(o.opts.RetryBase)
		return
	}
	d.sent(fctx, fresh)
}

func (d *delivery) sentStatus() *normalize.ReplyStatus {
	return &normalize.ReplyStatus{ID: d.replyID, Attempts: d.marker.Attempts, PlatformIDs: slices.Clone(d.marker.PlatformIDs)}
}

// sent acks the command of a reply whose reply.sent is stored. The ack is
// not waited for: a lost one redelivers the command, whose marker makes
// that a repeat of reply.sent (dropped by its id) and another ack.
func (d *delivery) sent(ctx context.Context, fresh bool) {
	o := d.o
	d.settle(ctx, d.msg.Ack)
	if fresh {
		o.obs.Sent(d.metricLabel(), len(d.marker.PlatformIDs), o.sinceStored(d.stored))
	}
	d.log.Debug("reply sent", "parts", len(d.marker.PlatformIDs), "attempt", d.marker.Attempts)
}

// fail dead-letters the command, reports reply.failed, then terminates it.
func (d *delivery) fail(ctx context.Context, f failure) {
	o := d.o
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	if f.Attempts == 0 {
		f.Attempts = d.tries
	}
	if f.At.IsZero() {
		f.At = o.opts.Now().UTC()
	}
	if f.Seq == 0 {
		f.Seq = d.seq
	}
	if d.marker.Failed == nil {
		d.record()
		d.marker.Failed = &f
		// A redelivery then repeats this outcome; losing it only means the
		// failure is worked out again.
		_ = d.saveMarker(fctx)
	}
	if err := d.deadLetter(fctx, f); err != nil {
		d.log.Warn("outbox cannot dead-letter a command; retrying later", "error", err)
		d.release(o.opts.RetryBase)
		return
	}
	status := &normalize.ReplyStatus{ID: d.replyID, Attempts: f.Attempts, PlatformIDs: d.marker.PlatformIDs,
		Error: &normalize.ReplyError{Code: f.Code, Message: f.Message, PlatformCode: f.PlatformCode, Attempts: f.Attempts}}
	outcome := "failed"
	if d.marker.Generation > 0 {
		outcome += ":" + strconv.Itoa(d.marker.Generation)
	}
	if d.reused {
		outcome += ":reused-by:" + strconv.FormatUint(d.seq, 10)
	}
	if err := d.publishStatus(fctx, normalize.TypeReplyFailed, outcome, status); err != nil {
		d.log.Warn("outbox cannot publish reply.failed; retrying later", "error", err)
		d.release(o.opts.RetryBase)
		return
	}
	d.settle(fctx, func() error { return d.msg.TermWithReason(clip(string(f.Code)+": "+f.Message, 256)) })
	o.obs.DeadLettered(d.metricLabel())
	o.obs.Failed(d.metricLabel(), f.Code)
	d.log.Warn("reply dead-lettered", "code", f.Code, "platform_code", f.PlatformCode, "attempt", f.Attempts, "reason", f.Message)
}

// settle ends the command with ack or term, clearing its conversation's
// hold first when it may have had one.
func (d *delivery) settle(ctx context.Context, end func() error) {
	if d.numDelivered > 1 || d.prevDeliveries > 0 {
		if err := clearHold(ctx, d.o.kv, d.it.queueKey, d.seq); err != nil {
			d.log.Warn("outbox cannot clear the conversation hold", "error", err)
		}
	}
	if err := end(); err != nil {
		// The command comes back after AckWait; the marker makes that a
		// repeat of this outcome.
		d.log.Warn("outbox cannot settle a command", "error", err)
	}
	d.o.markSettled(d.seq)
	d.o.untrack(d.it)
	d.o.settledIn(d.it.p, d.it.queueKey)
}

// statusConversation is the conversation the command's status belongs to:
// the subject's, or the body's when the subject has none.
func (d *delivery) statusConversation() normalize.ConversationID {
	if normalize.ValidID("c_", d.info.Conversation) {
		return normalize.ConversationID(d.info.Conversation)
	}
	if d.reply != nil {
		return d.reply.ConversationID
	}
	var partial struct {
		ConversationID string `json:"conversation_id"`
	}
	if json.Unmarshal(d.body, &partial) == nil && normalize.ValidID("c_", partial.ConversationID) {
		return normalize.ConversationID(partial.ConversationID)
	}
	return ""
}

// publishStatus publishes a reply.sent or reply.failed event. A command
// with no conversation or connector to speak of cannot have one.
func (d *delivery) publishStatus(ctx context.Context, typ normalize.Type, outcome string, st *normalize.ReplyStatus) error {
	m, err := d.statusMessage(typ, outcome, st)
	if err != nil || m == nil {
		return err
	}
	if _, err := d.o.opts.Bus.Publish(ctx, *m); err != nil {
		return fmt.Errorf("publishing %s: %w", typ, err)
	}
	return nil
}

// statusMessage is the status event of the command; nil when it has no
// conversation or connector to speak of.
func (d *delivery) statusMessage(typ normalize.Type, outcome string, st *normalize.ReplyStatus) (*bus.Message, error) {
	o := d.o
	conv := d.statusConversation()
	if conv == "" || d.platform == "" || d.connector == "" {
		d.log.Error("reply command names no conversation; its outcome is only in the dead-letter queue", "type", typ)
		return nil, nil
	}
	now := o.opts.Now().UTC()
	c := &normalize.Conversation{ID: conv}
	var window *time.Time
	if e := d.entry; e != nil {
		c = &normalize.Conversation{ID: conv, PlatformID: e.PlatformID, Kind: e.Kind, Title: e.Title, ThreadID: e.ThreadID}
		window = e.WindowExpiresAt
	}
	ev := &normalize.Event{
		ID:      normalize.StatusEventID(d.replyID, outcome),
		Source:  normalize.Source(o.opts.Region, d.platform, d.connector),
		Type:    typ,
		Subject: conv,
		Time:    now,
		Data: normalize.Data{
			Region: o.opts.Region, Platform: d.platform, Connector: d.connector,
			Conversation: c, Reply: st, ReceivedAt: now, WindowExpiresAt: window,
		},
	}
	data, err := normalize.Encode(ev)
	if err != nil {
		return nil, fmt.Errorf("encoding status event: %w", err)
	}
	return &bus.Message{
		Subject: o.subj.Event(o.opts.Region, d.platform, d.connector, string(conv), typ.Kind()),
		MsgID:   string(ev.ID),
		Data:    data,
	}, nil
}

// errMessage is the human part of a classified error, without the class.
func errMessage(ce *connectors.Error) string {
	if ce.Err != nil {
		return ce.Err.Error()
	}
	return ce.Error()
}

// clip shortens s to at most n bytes on a rune boundary and makes it fit a
// header line.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

func (o *Outbox) sinceStored(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	return max(time.Since(t), 0)
}

// UnknownConnector is the metrics label of commands naming a connector
// this instance does not run: command subjects come from helpdesks, and a
// label must not, or a stream of made-up connector tokens would add a
// series each.
const UnknownConnector = "_unknown"

// metricLabel is the connector label of this delivery's metrics; the
// connector is looked up once per delivery.
func (d *delivery) metricLabel() string {
	if d.label == "" {
		_, ok := d.o.opts.Lookup(d.connector)
		d.setLabel(ok)
	}
	return d.label
}

func (d *delivery) setLabel(running bool) {
	d.label = UnknownConnector
	if running {
		d.label = d.connector
	}
}

// claim marks part i of the reply as being sent by this instance, by
// compare-and-set on the marker, so that no other instance sends it at the
// same time (after an AckWait expiry, a takeover). It returns false, with
// the command handed back, when another instance holds a fresh claim on the
// part or has recorded it meanwhile, or when the marker cannot be written.
// A stale claim (its holder died or hung mid-send) is taken over: the
// part's outcome is unknown, and it is sent again.
func (d *delivery) claim(ctx context.Context, i int) bool {
	o := d.o
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	for range 3 {
		now := time.Now()
		if c := d.marker.Claim; c != nil && c.Part == i && c.Owner != o.opts.InstanceID {
			// A claim lapses after claimTTL, or as soon as its owner has
			// left the region's members: a dead instance's presence expires
			// with its leases, so a takeover does not wait out the claim.
			if c.live(now, o.claimTTL) && o.isMember(c.Owner) {
				d.log.Debug("another instance is sending this part", "part", i, "owner", c.Owner)
				d.release(min(o.claimTTL-now.Sub(c.At), turnPollMax))
				return false
			}
			d.log.Warn("a part was claimed and never recorded: its outcome is unknown, sending it again",
				"part", i, "owner", c.Owner, "claimed_at", c.At)
		}
		if len(d.marker.PlatformIDs) > i {
			d.log.Debug("the part was sent meanwhile", "part", i)
			d.release(handBackDelay)
			return false
		}
		next := d.marker
		next.Claim = &claim{Part: i, Owner: o.opts.InstanceID, At: now.UTC()}
		b, err := json.Marshal(next)
		if err != nil {
			d.log.Error("outbox cannot encode a sent-marker", "error", err)
			d.release(o.opts.RetryBase)
			return false
		}
		var rev uint64
		if d.rev == 0 {
			rev, err = o.kv.Create(cctx, markerKey(d.replyID), b)
		} else {
			rev, err = o.kv.Update(cctx, markerKey(d.replyID), b, d.rev)
		}
		if err == nil {
			d.marker, d.rev = next, rev
			return true
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongRevision(err) {
			d.log.Warn("outbox cannot claim a part; retrying later", "part", i, "error", err)
			d.release(o.opts.RetryBase)
			return false
		}
		// Another writer moved the marker on: look at what it says.
		m, rev, err := getMarker(cctx, o.kv, d.replyID)
		if err != nil {
			d.log.Warn("outbox cannot read the sent-marker; retrying later", "error", err)
			d.release(o.opts.RetryBase)
			return false
		}
		if d.fresh {
			// The reply id has a history after all (an earlier command
			// with the same id, a replay): deliver again, reading it first.
			d.fresh = false
			d.log.Debug("a first delivery found a sent-marker; delivering again with it")
			d.release(0)
			return false
		}
		d.marker, d.rev = m, rev
	}
	d.release(o.opts.RetryBase)
	return false
}

// saveMarker writes the delivery's marker, its claim cleared, with the
// ledger records of a part just sent in the same pipelined batch (one round
// trip), as a compare-and-set at the revision this delivery holds, within
// finishTimeout. When it cannot, the marker is kept in memory so this
// process at least never sends those parts again.
func (d *delivery) saveMarker(ctx context.Context, ledger ...bus.Message) bool {
	o := d.o
	d.marker.Claim = nil
	m := d.marker
	m.PlatformIDs = slices.Clone(m.PlatformIDs)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer cancel()
	msg, err := markerMessage(o.kv, d.replyID, m, d.rev)
	var res []bus.PubResult
	if err == nil {
		res, err = o.opts.Bus.Publish(wctx, append([]bus.Message{msg}, ledger...)...)
	}
	if err == nil && res[0].Err != nil {
		// Someone wrote the marker since this delivery read or claimed it:
		// a claim was not respected, or a replay reset it. This process
		// keeps what it knows.
		err = res[0].Err
		d.log.Error("the sent-marker changed under a delivery", "error", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.unsaved[d.replyID] = m
		return false
	}
	d.rev = res[0].Sequence
	delete(o.unsaved, d.replyID)
	return true
}

// clearClaim removes this delivery's claim from the marker, when it holds
// one, best effort: a claim left behind only delays the next sender by
// claimTTL.
func (d *delivery) clearClaim(ctx context.Context) {
	if c := d.marker.Claim; c == nil || c.Owner != d.o.opts.InstanceID {
		return
	}
	if !d.saveMarker(ctx) {
		d.log.Debug("outbox cannot clear its claim on a part; it lapses by itself")
	}
}
