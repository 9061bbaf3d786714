package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

// ConsumerName is the durable pull consumer of the outbox on PARLEY_CMD_<R>.
const ConsumerName = "outbox"

// Defaults applied by New to zero fields of Options.
const (
	DefaultMaxAttempts    = 10
	DefaultInProcessRetry = 10 * time.Second
	DefaultRetryBase      = 2 * time.Second
	DefaultRetryMax       = 10 * time.Minute
	DefaultAckWait        = 30 * time.Second
	DefaultMaxInFlight    = 256
	DefaultRateLimitedFor = 24 * time.Hour
	// MaxAckPending bounds the commands one consumer holds at once, waiting
	// ones included.
	MaxAckPending = 10000
)

const (
	// sendTimeout bounds one SendPart call; heartbeats keep the command
	// alive meanwhile.
	sendTimeout = 60 * time.Second
	// finishTimeout bounds the bookkeeping of one outcome (marker, DLQ,
	// status, ack), which runs to completion even during shutdown.
	finishTimeout = 15 * time.Second
	// drainTimeout bounds how long Run waits for in-flight sends once its
	// context ended.
	drainTimeout = sendTimeout + 2*finishTimeout
	// turnPollMin and turnPollMax pace the checks of a command that waits
	// for an earlier command of its conversation held elsewhere.
	turnPollMin = 100 * time.Millisecond
	turnPollMax = 5 * time.Second
	// pullExpiry and pullHeartbeat bound how long the consumer can sit idle
	// when a pull request is lost: under load, nats-server 2.15.2 was seen
	// to drop a Consume pull request without a status, leaving the client
	// waiting for messages that never come until the request's heartbeats
	// are missed (2×heartbeat). The library's default heartbeat (15s) made
	// that a 30s stall; 1s makes it 2s.
	pullExpiry    = 5 * time.Second
	pullHeartbeat = time.Second
	// maxHeldPerConversation bounds the commands of one conversation held
	// in memory (and counted in MaxAckPending) at once.
	maxHeldPerConversation = 100
	// handBackDelay is the NakWithDelay of commands handed back at
	// shutdown: long enough that this instance's last pull does not take
	// them again, short enough that another instance resumes at once.
	handBackDelay = time.Second
	// standbyDelay is how soon a reply handed back by an instance without
	// the connector's session is offered again.
	standbyDelay = 500 * time.Millisecond
)

// Sender is what the outbox needs of a connector: its policy for a
// conversation, rendering a reply into parts, sending one part.
// connectors.Connector satisfies it.
type Sender interface {
	Policy(to connectors.Address) connectors.Policy
	Plan(reply *normalize.Reply, to connectors.Address, adm connectors.Admission) ([]connectors.Part, error)
	SendPart(ctx context.Context, to connectors.Address, part connectors.Part) (connectors.SentPart, error)
}

// Target is a connector enabled on this instance, as the outbox uses it.
type Target struct {
	Sender   Sender
	Platform string
	// Standby is true when the connector's sends need its live session and
	// another instance holds it (connectors.SendAffinity): replies are
	// handed back, without counting an attempt, for the holder to send.
	Standby bool
	// Session is true when the connector's sends need its live session and
	// this instance holds it: the connector's replies are then this
	// instance's to send.
	Session bool
}

// Ledger records the platform messages the outbox sent (internal/ledger):
// the messages to publish with each part's sent-marker.
type Ledger interface {
	Messages(connector string, sent ...connectors.SentMessage) ([]bus.Message, error)
}

// Observer receives the outbox's outcomes, for metrics. Its methods are
// called from many goroutines and must not block.
type Observer interface {
	// Sent: a reply was sent in parts messages, d after its command was
	// stored.
	Sent(connector string, parts int, d time.Duration)
	// Failed: a reply ended in reply.failed with code.
	Failed(connector string, code normalize.ErrorCode)
	// Retried: a send failed with class and will be tried again.
	Retried(connector string, class connectors.Class)
	// DeadLettered: a command was copied to the dead-letter queue.
	DeadLettered(connector string)
	// Owned: this instance now owns n of the region's partitions.
	Owned(n int)
	// Send: one SendPart call for an account of a connector ended with
	// outcome: "sent", "rate_limited" (a retry-after), "retry" (transient)
	// or "failed" (permanent).
	Send(connector, account, outcome string)
	// Backlog: a connector's commands waiting (in the stream, held or
	// parked) and the age of the oldest, as its owner sees them; 0, 0 when
	// this instance stops owning it.
	Backlog(connector string, waiting int, oldest time.Duration)
}

// Options configure an Outbox.
type Options struct {
	Region    string
	Bus       *bus.Bus
	Handles   *bus.Region // from Bus.Provision
	Directory *directory.Store
	// Ledger records every part sent; nil records nothing (tests).
	Ledger Ledger
	// Lookup returns the connectors enabled on this instance.
	Lookup func(connectorID string) (Target, bool)
	// Connectors lists the ids of the region's connectors this instance
	// runs; nil for none. The outbox owns connectors' replies preferably
	// on an instance that runs them.
	Connectors func() []string
	// Logger receives the outbox's records; the outbox adds the region.
	Logger *slog.Logger
	// Now is the clock of reply windows, not_after and event times.
	// Default time.Now. Pacing and retry waits always use real time.
	Now func() time.Time
	// Observer receives outcomes; nil means none.
	Observer Observer

	// MaxAttempts is how many deliveries a retryable failure gets before
	// the command is dead-lettered (default 10). In-process retries within
	// one delivery do not count against it, but they do count in the
	// "attempts" that status events and dead letters report (every try of
	// the reply).
	MaxAttempts int
	// RateLimitedFor is how long after its command was stored a reply may
	// keep meeting the platform's retry-after before it fails with
	// rate_limited (default 24h). Retry-afters do not count against
	// MaxAttempts: they are the platform's pacing, not failures.
	RateLimitedFor time.Duration
	// InProcessRetry is how long one delivery may spend waiting on
	// in-process retries before a durable NakWithDelay (default 10s).
	InProcessRetry time.Duration
	// RetryBase and RetryMax shape the durable backoff: RetryBase*2^(n-1)
	// with jitter, capped at RetryMax (defaults 2s and 10m).
	RetryBase time.Duration
	RetryMax  time.Duration
	// AckWait is the consumer's ack wait (default 30s); held and waiting
	// commands are kept alive with InProgress every AckWait/3.
	AckWait time.Duration
	// MaxInFlight bounds the SendPart calls in flight across all
	// conversations (default 256).
	MaxInFlight int
	// InstanceID names this instance in the claims of parts it sends and
	// in its leases; unique per Outbox (default hostname-pid-random).
	InstanceID string
}

// Outbox delivers the reply commands of one region. Create it with New,
// run it with Run.
type Outbox struct {
	opts Options
	log  *slog.Logger
	subj bus.Subjects
	obs  Observer
	kv   jetstream.KeyValue // parley_outbox_<r>: sent-markers and holds

	bucketName string             // of kv
	parkStream jetstream.Stream   // kv's stream, where parked commands are
	leases     jetstream.KeyValue // parley_leases_<r>: members and partition owners
	leaseTTL   time.Duration
	assign     *assignment
	known      chan struct{} // closed once the members are first known
	knownOnce  sync.Once
	parts      map[string]*partition // by connector token; guarded by mu
	partsWG    sync.WaitGroup

	sem      chan struct{} // bounds SendPart calls in flight
	pacer    *pacer
	maxHeld  int           // maxHeldPerConversation; tests lower it
	claimTTL time.Duration // claimTTL; tests lower it

	running atomic.Bool

	mu       sync.Mutex // guards the partitions' maps too
	limiters map[string]*rate.Limiter
	// unsaved keeps markers whose KV write failed after a part was sent, so
	// a redelivery to this process still skips that part.
	unsaved map[string]marker
	// settled remembers the last stream sequences this process acked or
	// terminated (settledOrder is their FIFO).
	settled      map[uint64]struct{}
	settledOrder []uint64

	// afterPart, when set (tests only), runs after a part's marker is
	// written; an error abandons the delivery as a crash would.
	afterPart func(replyID string, part int) error
}

// New checks opts and returns an Outbox. It does no I/O.
func New(opts Options) (*Outbox, error) {
	var missing []string
	if opts.Region == "" {
		missing = append(missing, "region")
	}
	if opts.Bus == nil {
		missing = append(missing, "bus")
	}
	if opts.Handles == nil || opts.Handles.Commands == nil || opts.Handles.Outbox == nil || opts.Handles.Leases == nil {
		missing = append(missing, "handles (commands stream, outbox and leases buckets)")
	}
	if opts.Directory == nil {
		missing = append(missing, "directory")
	}
	if opts.Lookup == nil {
		missing = append(missing, "lookup")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("outbox options: missing %v", missing)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.RateLimitedFor <= 0 {
		opts.RateLimitedFor = DefaultRateLimitedFor
	}
	if opts.InProcessRetry <= 0 {
		opts.InProcessRetry = DefaultInProcessRetry
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = DefaultRetryBase
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.RetryMax < opts.RetryBase {
		opts.RetryMax = opts.RetryBase
	}
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.AckWait < time.Second {
		// InProgress every AckWait/3 must stay well above a round trip.
		opts.AckWait = time.Second
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.InstanceID == "" {
		// Unique per Outbox, not only per process: leases and claims in its
		// name are its own.
		host, _ := os.Hostname()
		opts.InstanceID = host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(rand.Uint64()&0xffffff, 36)
	}
	obs := opts.Observer
	if obs == nil {
		obs = nopObserver{}
	}
	o := &Outbox{
		opts:       opts,
		log:        opts.Logger.With("region", opts.Region),
		subj:       opts.Bus.Subjects(),
		obs:        obs,
		kv:         opts.Handles.Outbox,
		leases:     opts.Handles.Leases,
		bucketName: bus.BucketName(bus.BucketOutbox, opts.Region),
		leaseTTL:   opts.Bus.Options().LeaseTTL,
		sem:        make(chan struct{}, opts.MaxInFlight),
		pacer:      newPacer(),
		maxHeld:    maxHeldPerConversation,
		claimTTL:   claimTTL,
		limiters:   map[string]*rate.Limiter{},
		unsaved:    map[string]marker{},
	}
	return o, nil
}

// Run delivers the region's reply commands until ctx ends. It announces
// this instance among the region's outbox instances and owns the
// connectors' commands the assignment gives it (each under a lease, so
// never two owners at once), handing a connector over when the members
// change. When ctx ends it stops fetching, lets the sends in flight finish
// and record their outcome, hands the commands it held but had not started
// back to the stream for the next owner, releases its leases and returns
// nil. Trouble reaching NATS is retried and logged, never returned; an
// error means Run was misused (called twice at once).
func (o *Outbox) Run(ctx context.Context) error {
	if !o.running.CompareAndSwap(false, true) {
		return errors.New("outbox of region " + o.opts.Region + " is already running")
	}
	defer o.running.Store(false)
	o.mu.Lock()
	o.parts = map[string]*partition{}
	o.mu.Unlock()
	o.assign = newAssignment(o.self())
	o.known = make(chan struct{})
	o.knownOnce = sync.Once{}

	hbCtx, stopHeartbeats := context.WithCancel(context.WithoutCancel(ctx))
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		o.heartbeats(hbCtx)
	}()
	defer func() {
		stopHeartbeats()
		<-hbDone
	}()

	o.log.Info("outbox starting", "instance", o.opts.InstanceID)
	if !o.setUp(ctx) {
		o.log.Info("outbox stopped")
		return nil
	}
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){o.announce, o.followMembers, o.discover} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx)
		}()
	}
	wg.Wait()
	o.partsWG.Wait()
	o.log.Info("outbox stopped")
	return nil
}

// item is one command held by this process, from delivery until its
// outcome (ack, nak or term). A redelivery of the same stream sequence
// while it is held replaces msg: only the latest delivery can be acked.
type item struct {
	seq      uint64
	queueKey string
	p        *partition

	mu  sync.Mutex
	msg jetstream.Msg
}

func (it *item) current() jetstream.Msg {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.msg
}

// convQueue holds the commands of one conversation, by stream sequence;
// one goroutine works through it and exits when it is empty.
type convQueue struct {
	key    string
	p      *partition
	items  []*item       // ascending seq
	notify chan struct{} // a command arrived (cap 1)
	// recheck: a command of the same conversation was settled in another
	// partition (its subject named another connector), so one waiting for
	// it looks at the stream again at once (cap 1).
	recheck chan struct{}
}

// dispatch runs on the consumer's goroutine: it only files the command
// under its conversation, so it never blocks on a send.
func (p *partition) dispatch(msg jetstream.Msg) {
	o := p.o
	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery; nothing to order or ack.
		o.log.Warn("outbox ignoring a message without jetstream metadata", "subject", msg.Subject(), "error", err)
		return
	}
	seq := md.Sequence.Stream

	o.mu.Lock()
	defer o.mu.Unlock()
	if p.stopping || !p.owned || p.ctx.Err() != nil {
		_ = msg.NakWithDelay(handBackDelay)
		return
	}
	if it, ok := p.items[seq]; ok {
		it.mu.Lock()
		it.msg = msg
		it.mu.Unlock()
		return
	}
	key := queueKey(msg.Subject())
	if p.shouldPark(key, p.convs[key], seq) {
		// One busy conversation must not use up MaxAckPending and stall
		// the others; see park.go.
		p.park(key, seq, msg)
		p.startQueueLocked(key)
		return
	}
	p.insertLocked(p.startQueueLocked(key), &item{seq: seq, queueKey: key, p: p, msg: msg})
}

// startQueueLocked returns the queue of a conversation, starting its
// worker if it has none.
func (p *partition) startQueueLocked(key string) *convQueue {
	q, ok := p.convs[key]
	if !ok {
		q = &convQueue{key: key, p: p, notify: make(chan struct{}, 1), recheck: make(chan struct{}, 1)}
		p.convs[key] = q
		p.wg.Add(1)
		go p.work(p.ctx, q)
	}
	return q
}

// insertLocked files a command in its queue, in stream order, and wakes
// the queue's worker.
func (p *partition) insertLocked(q *convQueue, it *item) {
	p.items[it.seq] = it
	seq := it.seq
	i, _ := slices.BinarySearchFunc(q.items, seq, func(x *item, s uint64) int {
		switch {
		case x.seq < s:
			return -1
		case x.seq > s:
			return 1
		}
		return 0
	})
	q.items = slices.Insert(q.items, i, it)
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// queueKey is the conversation token of a command subject, or the subject
// itself when it has none (such a command is invalid and fails on its own).
func queueKey(subject string) string {
	info, err := bus.ParseSubject(subject)
	if err != nil || info.Class != bus.ClassCommand || info.Conversation == "" {
		return "subject:" + subject
	}
	return info.Conversation
}

// settledIn tells the other partitions' queues of a conversation that one
// of its commands was settled, so any waiting for it looks again.
func (o *Outbox) settledIn(p *partition, conv string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, other := range o.parts {
		if other == p {
			continue
		}
		if q, ok := other.convs[conv]; ok {
			select {
			case q.recheck <- struct{}{}:
			default:
			}
		}
	}
}

// untrack forgets a command once its outcome is settled.
func (o *Outbox) untrack(it *item) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if it.p.items[it.seq] == it {
		delete(it.p.items, it.seq)
	}
}

// work delivers the commands of one conversation, lowest sequence first.
func (p *partition) work(ctx context.Context, q *convQueue) {
	o := p.o
	defer p.wg.Done()
	for {
		p.refill(ctx, q)
		o.mu.Lock()
		if len(q.items) == 0 {
			if _, ok := p.parked[q.key]; ok && !p.stopping && ctx.Err() == nil {
				// Parked commands not loaded yet (being parked, or the bucket
				// did not answer): try again shortly.
				o.mu.Unlock()
				kit.Sleep(ctx, 200*time.Millisecond)
				continue
			}
			delete(p.convs, q.key)
			o.mu.Unlock()
			return
		}
		it := q.items[0]
		stopping := p.stopping
		o.mu.Unlock()

		if stopping || ctx.Err() != nil {
			p.releaseQueue(q)
			return
		}
		o.deliver(ctx, q, it)
		o.mu.Lock()
		if i := slices.Index(q.items, it); i >= 0 && p.items[it.seq] != it {
			q.items = slices.Delete(q.items, i, i+1)
		}
		o.mu.Unlock()
	}
}

// releaseQueue hands every command of a queue back to the stream at once,
// so the next owner can take them while this one stops.
func (p *partition) releaseQueue(q *convQueue) {
	o := p.o
	o.mu.Lock()
	items := q.items
	q.items = nil
	delete(p.convs, q.key)
	for _, it := range items {
		if p.items[it.seq] == it {
			delete(p.items, it.seq)
		}
	}
	o.mu.Unlock()
	for _, it := range items {
		_ = it.current().NakWithDelay(handBackDelay)
	}
}

// isHead reports whether it is still the first command of its queue; a
// redelivered earlier command may have arrived while it waited.
func (o *Outbox) isHead(q *convQueue, it *item) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(q.items) > 0 && q.items[0] == it && !q.p.stopping
}

// heartbeats keeps every held command alive: waiting ones as well as the
// ones being sent. InProgress resets the consumer's AckWait.
func (o *Outbox) heartbeats(ctx context.Context) {
	t := time.NewTicker(o.opts.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o.mu.Lock()
		var msgs []jetstream.Msg
		for _, p := range o.parts {
			for _, it := range p.items {
				msgs = append(msgs, it.current())
			}
		}
		o.mu.Unlock()
		for _, m := range msgs {
			// An error means the command was settled meanwhile, or the
			// connection is down; either way the next tick tries again.
			_ = m.InProgress()
		}
		o.pacer.prune(time.Now())
	}
}

// limiter returns the token bucket of a connector's account, or nil for
// unlimited. Budgets are per connector and account, never per connector
// alone: a connector serving fifty pages has fifty of them. A changed
// limit (an operator's new override) replaces the bucket's rate.
func (o *Outbox) limiter(connector string, l connectors.Limits) *rate.Limiter {
	if l.PerAccount <= 0 {
		return nil
	}
	key := connector + "\x00" + l.Account
	limit := rate.Limit(l.PerAccount)
	burst := max(l.Burst, 1)
	o.mu.Lock()
	defer o.mu.Unlock()
	lim, ok := o.limiters[key]
	switch {
	case !ok:
		lim = rate.NewLimiter(limit, burst)
		o.limiters[key] = lim
	case lim.Limit() != limit || lim.Burst() != burst:
		lim.SetLimit(limit)
		lim.SetBurst(burst)
	}
	return lim
}

// acquire takes a send slot; it fails only when ctx ends.
func (o *Outbox) acquire(ctx context.Context) error {
	select {
	case o.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *Outbox) release() { <-o.sem }

type nopObserver struct{}

func (nopObserver) Sent(string, int, time.Duration)    {}
func (nopObserver) Failed(string, normalize.ErrorCode) {}
func (nopObserver) Retried(string, connectors.Class)   {}
func (nopObserver) DeadLettered(string)                {}
func (nopObserver) Owned(int)                          {}
func (nopObserver) Send(string, string, string)        {}
func (nopObserver) Backlog(string, int, time.Duration) {}

// settledRing is how many recently settled stream sequences are remembered.
const settledRing = 4096

// markSettled remembers that seq was acked or terminated by this process.
func (o *Outbox) markSettled(seq uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.settled == nil {
		o.settled = make(map[uint64]struct{}, settledRing)
		o.settledOrder = make([]uint64, 0, settledRing)
	}
	if len(o.settledOrder) == settledRing {
		delete(o.settled, o.settledOrder[0])
		o.settledOrder = o.settledOrder[1:]
	}
	o.settled[seq] = struct{}{}
	o.settledOrder = append(o.settledOrder, seq)
}

func (o *Outbox) recentlySettled(seq uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.settled[seq]
	return ok
}

// loadMarker reads a reply's marker and its revision (0: none yet),
// preferring this process's own record when its last write failed.
func (o *Outbox) loadMarker(ctx context.Context, replyID string) (marker, uint64, error) {
	gctx, cancel := context.WithTimeout(ctx, finishTimeout)
	defer cancel()
	m, rev, err := getMarker(gctx, o.kv, replyID)
	o.mu.Lock()
	u, ok := o.unsaved[replyID]
	o.mu.Unlock()
	if ok && (err != nil || len(u.PlatformIDs) > len(m.PlatformIDs) || u.Done && !m.Done) {
		return u, rev, nil
	}
	return m, rev, err
}
