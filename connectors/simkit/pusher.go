package simkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/parley-gateway/parley/connectors/kit"
)

// Retry schedules of real platforms: the waits between a failed delivery
// and the next attempt. Tests pass short ones of their own.
var (
	// SlackRetries: Slack retries an event three times, at once, after a
	// minute and after five minutes.
	SlackRetries = []time.Duration{0, time.Minute, 5 * time.Minute}
	// MetaRetries approximates Meta's webhooks: at once, then less and
	// less often (Meta keeps trying for up to 36 hours; this stops after a
	// day).
	MetaRetries = []time.Duration{0, 15 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 4 * time.Hour, 18 * time.Hour}
)

// DefaultPushTimeout bounds one delivery attempt when PusherOptions.Timeout
// is 0. Meta gives up on an answer after 20 seconds, Slack after 3.
const DefaultPushTimeout = 10 * time.Second

// maxAttemptsKept bounds Pusher.Attempts.
const maxAttemptsKept = 10000

// Errors of a push.
var (
	// ErrNotAcked: every attempt of the schedule failed (non-2xx or
	// transport error); the platform gives the delivery up.
	ErrNotAcked = errors.New("webhook delivery not acknowledged")
	// ErrNoURL: the pusher has no URL to deliver to (SetURL was not
	// called).
	ErrNoURL = errors.New("no webhook URL")
	// ErrClosed: the pusher was closed before the delivery was acknowledged.
	ErrClosed = errors.New("pusher closed")
	// ErrWithdrawn: the push's Wanted said no before an attempt.
	ErrWithdrawn = errors.New("webhook delivery withdrawn")
)

// PusherOptions configures a Pusher.
type PusherOptions struct {
	// Client delivers the requests; nil: a client of the pusher's own,
	// without a proxy (webhooks in tests are on loopback), closed by Close.
	Client *http.Client
	// Sign signs one request over its body, setting the platform's
	// signature headers; nil sends unsigned requests.
	Sign func(r *http.Request, body []byte)
	// Retries are the waits between attempts after a non-2xx answer or a
	// transport error: len(Retries)+1 attempts in all. nil: one attempt.
	Retries []time.Duration
	// Backoff, when set, replaces Retries: the pusher backs off the
	// endpoint rather than each push, as Telegram does. After n failed
	// attempts in a row, of whichever pushes (a 2xx answer sets n back to
	// 0), the next attempt waits until Backoff(n) has passed since the
	// last failure, even when it is another push's first. Each push is
	// given up after MaxAttempts attempts; 0 retries it until it is
	// acknowledged or withdrawn, its context ends or Close.
	Backoff     func(n int) time.Duration
	MaxAttempts int
	// OnAttempt, when set, is called from the pusher's worker after each
	// attempt, before any wait, so that a simulator can show delivery
	// state as its platform does (Telegram's getWebhookInfo). It must not
	// wait for the pusher (Push, Flush, Close).
	OnAttempt func(Attempt)
	// Timeout bounds one attempt (0: DefaultPushTimeout).
	Timeout time.Duration
	// Header is set on every request; Content-Type defaults to
	// application/json.
	Header http.Header
	// Now timestamps attempts (nil: time.Now). Waits always use real time.
	Now func() time.Time
}

// Push is one webhook delivery.
type Push struct {
	Body []byte
	// Header is set on the request after the pusher's own.
	Header http.Header
	// Sign, when set, signs instead of the pusher's Sign: a forged push
	// signs with the wrong secret. Unsigned sends no signature.
	Sign func(r *http.Request, body []byte)
	// Once makes one attempt, whatever the schedule: a forger or a broken
	// client does not retry. It neither waits for nor moves a Backoff.
	Once bool
	// Wanted, when set, is asked before each attempt, after any wait;
	// false withdraws the push (ErrWithdrawn) without cutting an attempt
	// short: Telegram stops retrying an update dropped from its queue.
	Wanted func() bool
}

// Unsigned is a Push.Sign that signs nothing.
func Unsigned(*http.Request, []byte) {}

// Doubling is a PusherOptions.Backoff: first after one failure, twice the
// previous wait after each further one, never more than limit.
func Doubling(first, limit time.Duration) func(n int) time.Duration {
	return func(n int) time.Duration {
		if first <= 0 {
			return 0
		}
		d := first
		for i := 1; i < n && d < limit; i++ {
			d *= 2
		}
		return min(d, limit)
	}
}

// Attempt is one HTTP request of a delivery.
type Attempt struct {
	Delivery int       // which push, from 1 in the order pushed
	Try      int       // from 1
	At       time.Time // when it was sent
	Status   int       // the answer's status; 0 when no answer came
	Err      error     // the transport error, when no answer came
}

// Outcome is what became of one push.
type Outcome struct {
	Delivery int
	Attempts []Attempt
	Acked    bool // an attempt was answered 2xx
}

// Status is the status of the last attempt; 0 when none was answered.
func (o Outcome) Status() int {
	if len(o.Attempts) == 0 {
		return 0
	}
	return o.Attempts[len(o.Attempts)-1].Status
}

// Delivery is a queued push.
type Delivery struct {
	done chan struct{}
	out  Outcome
	err  error
}

// Done is closed once the push is acknowledged or given up.
func (d *Delivery) Done() <-chan struct{} { return d.done }

// Wait returns the outcome once Done, or ctx's error when ctx ends first
// (the push goes on). The error is nil when acknowledged, else it wraps
// ErrNotAcked, ErrNoURL, ErrClosed, ErrWithdrawn or the push's context
// error.
func (d *Delivery) Wait(ctx context.Context) (Outcome, error) {
	select {
	case <-d.done:
		return d.out, d.err
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

func (d *Delivery) finish(out Outcome, err error) {
	d.out, d.err = out, err
	close(d.done)
}

// Pusher delivers webhook pushes to one URL the way a platform does: each
// request signed over its body, retried on the schedule (or the endpoint's
// Backoff) until a 2xx answer, one push after another in the order they
// were queued (a push waits for the ones before it to be acknowledged or
// given up).
//
// It runs one worker goroutine while it has pushes to deliver and none
// otherwise; Close cancels what is pending and waits for the worker. It is
// safe for concurrent use.
type Pusher struct {
	opts   PusherOptions
	client *http.Client
	ownTr  *http.Transport
	now    func() time.Time
	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	url      string
	closed   bool
	running  bool
	idle     chan struct{} // closed and replaced when the worker stops
	queue    []queued
	seq      int
	last     Push
	hasLast  bool
	acked    int
	attempts []Attempt

	// The endpoint's back-off, used by the one worker only: failed
	// attempts in a row, and the earliest time of the next attempt.
	failures int
	retryAt  time.Time
}

type queued struct {
	ctx context.Context
	p   Push
	d   *Delivery
	seq int
}

// NewPusher returns a pusher with no URL yet. It starts nothing.
func NewPusher(opts PusherOptions) *Pusher {
	p := &Pusher{opts: opts, client: opts.Client, now: opts.Now, idle: make(chan struct{})}
	if p.client == nil {
		p.ownTr = http.DefaultTransport.(*http.Transport).Clone()
		p.ownTr.Proxy = nil
		p.client = &http.Client{Transport: p.ownTr}
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.opts.Timeout <= 0 {
		p.opts.Timeout = DefaultPushTimeout
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// SetURL sets where pushes go; an attempt uses the URL set when it starts.
func (p *Pusher) SetURL(url string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.url = url
}

// URL returns where pushes go.
func (p *Pusher) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.url
}

// Push delivers m and waits for its outcome: nil once acknowledged, an
// error wrapping ErrNotAcked when the schedule ran out, ErrNoURL,
// ErrClosed, or ctx's error when ctx ended first (then the push is
// abandoned, and the outcome holds no attempts). It waits for the pushes
// queued before it.
func (p *Pusher) Push(ctx context.Context, m Push) (Outcome, error) {
	d := p.enqueue(ctx, m)
	return d.Wait(ctx)
}

// Send queues m and returns at once; the push is delivered after the ones
// queued before it, until acknowledged, given up, or Close.
func (p *Pusher) Send(m Push) *Delivery { return p.enqueue(context.Background(), m) }

func (p *Pusher) enqueue(ctx context.Context, m Push) *Delivery {
	d := &Delivery{done: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		d.finish(Outcome{}, ErrClosed)
		return d
	}
	p.seq++
	m.Body = bytes.Clone(m.Body)
	p.queue = append(p.queue, queued{ctx: ctx, p: m, d: d, seq: p.seq})
	p.last, p.hasLast = m, true
	if !p.running {
		p.running = true
		p.wg.Add(1)
		go p.drain()
	}
	return d
}

// Last returns the last push queued, for a redelivery of the same body.
func (p *Pusher) Last() (Push, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.hasLast
}

// drain delivers queued pushes in order and stops when none is left.
func (p *Pusher) drain() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.running = false
			close(p.idle)
			p.idle = make(chan struct{})
			p.mu.Unlock()
			return
		}
		q := p.queue[0]
		p.queue = p.queue[1:]
		p.mu.Unlock()
		out, err := p.deliver(q)
		q.d.finish(out, err)
	}
}

// deliver makes the attempts of one push.
func (p *Pusher) deliver(q queued) (Outcome, error) {
	ctx, cancel := context.WithCancel(q.ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()

	out := Outcome{Delivery: q.seq}
	ended := func() error {
		if p.ctx.Err() != nil {
			return ErrClosed
		}
		return q.ctx.Err()
	}
	backoff := p.opts.Backoff != nil && !q.p.Once
	for try := 1; ; try++ {
		if backoff && !kit.Sleep(ctx, time.Until(p.retryAt)) {
			return out, ended()
		}
		if ctx.Err() != nil {
			return out, ended()
		}
		if q.p.Wanted != nil && !q.p.Wanted() {
			return out, ErrWithdrawn
		}
		url := p.URL()
		if url == "" {
			return out, ErrNoURL
		}
		a := Attempt{Delivery: q.seq, Try: try, At: p.now()}
		a.Status, a.Err = p.attempt(ctx, url, q.p)
		if a.Err != nil && ctx.Err() != nil {
			return out, ended() // cancelled mid-request: not an attempt the platform made
		}
		out.Attempts = append(out.Attempts, a)
		acked := a.Err == nil && a.Status >= 200 && a.Status <= 299
		p.record(a, acked)
		if backoff {
			p.backOff(acked)
		}
		if p.opts.OnAttempt != nil {
			p.opts.OnAttempt(a)
		}
		if acked {
			out.Acked = true
			return out, nil
		}
		if p.lastTry(try, q.p.Once) {
			last := fmt.Sprintf("status %d", a.Status)
			if a.Err != nil {
				last = a.Err.Error()
			}
			return out, fmt.Errorf("%w after %d attempts (last: %s)", ErrNotAcked, try, last)
		}
		if !backoff && !kit.Sleep(ctx, p.opts.Retries[try-1]) {
			return out, ended()
		}
	}
}

// backOff moves the endpoint's back-off after an attempt.
func (p *Pusher) backOff(acked bool) {
	if acked {
		p.failures, p.retryAt = 0, time.Time{}
		return
	}
	p.failures++
	p.retryAt = time.Now().Add(p.opts.Backoff(p.failures))
}

// lastTry reports whether a push gives up after its try-th failed attempt.
func (p *Pusher) lastTry(try int, once bool) bool {
	switch {
	case once:
		return true
	case p.opts.Backoff != nil:
		return p.opts.MaxAttempts > 0 && try >= p.opts.MaxAttempts
	}
	return try > len(p.opts.Retries)
}

// attempt sends one request and returns the answer's status.
func (p *Pusher) attempt(ctx context.Context, url string, m Push) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(m.Body))
	if err != nil {
		return 0, fmt.Errorf("building the webhook request: %w", err)
	}
	for k, vs := range p.opts.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	for k, vs := range m.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	sign := p.opts.Sign
	if m.Sign != nil {
		sign = m.Sign
	}
	if sign != nil {
		sign(req, m.Body)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

func (p *Pusher) record(a Attempt, acked bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.attempts) == maxAttemptsKept {
		p.attempts = append(p.attempts[:0:0], p.attempts[1:]...)
	}
	p.attempts = append(p.attempts, a)
	if acked {
		p.acked++
	}
}

// Acked counts the pushes acknowledged with a 2xx answer.
func (p *Pusher) Acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked
}

// Attempts returns every attempt made (the latest 10000), in order.
func (p *Pusher) Attempts() []Attempt {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Attempt(nil), p.attempts...)
}

// Flush waits until every queued push is acknowledged or given up, or
// returns ctx's error.
func (p *Pusher) Flush(ctx context.Context) error {
	for {
		p.mu.Lock()
		running, idle := p.running, p.idle
		p.mu.Unlock()
		if !running {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close gives up every pending push (its outcome wraps ErrClosed),
// cancels the attempt in flight and waits for the worker. Pushes after
// Close fail with ErrClosed. It is idempotent.
func (p *Pusher) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	if p.ownTr != nil {
		p.ownTr.CloseIdleConnections()
	}
}
