package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/ledger"
	"github.com/parley-gateway/parley/normalize"
)

const (
	testRegion    = "eu"
	testPlatform  = "fake"
	testConnector = "fk-eu"
	testAccount   = "acct-1"
)

// env is one region on a real in-process JetStream server, with a log of
// every status event stored in the events stream.
type env struct {
	b        *bus.Bus
	reg      *bus.Region
	dir      *directory.Store
	ledger   *ledger.Ledger
	statuses *statusLog
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvOn(t, bustest.Start(t))
}

// newEnvOn is newEnv on a given bus (a cluster's, say).
func newEnvOn(t testing.TB, b *bus.Bus) *env {
	t.Helper()
	reg := bustest.ProvisionRegion(t, b, testRegion)
	dir := directory.New(reg.Directory, testRegion)
	e := &env{b: b, reg: reg, dir: dir, ledger: ledger.New(b, reg.Ledger, testRegion, dir), statuses: newStatusLog()}
	e.statuses.follow(t, b)
	return e
}

// testContext is a context bounded well inside the test timeout.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// conversation records an inbound message in the directory and returns
// the conversation's id. at is the time of the customer's message.
func (e *env) conversation(t testing.TB, chat string, kind normalize.ConversationKind, at time.Time) normalize.ConversationID {
	t.Helper()
	id := normalize.NewConversationID(testPlatform, testAccount, chat)
	ev := &normalize.Event{
		ID:      normalize.NewEventID(testPlatform, testAccount, chat, at.String()),
		Source:  normalize.Source(testRegion, testPlatform, testConnector),
		Type:    normalize.TypeMessageReceived,
		Subject: id,
		Time:    at,
		Data: normalize.Data{
			Region: testRegion, Platform: testPlatform, Connector: testConnector,
			Conversation: &normalize.Conversation{ID: id, PlatformID: chat, Kind: kind},
			Message:      &normalize.Message{Text: "hello"},
		},
	}
	ctx := testContext(t, 10*time.Second)
	if err := e.dir.RecordInbound(ctx, directory.Inbound{Event: ev, Account: testAccount}); err != nil {
		t.Fatalf("recording conversation %s: %v", chat, err)
	}
	return id
}

// submit stores a reply command through Submit.
func (e *env) submit(t testing.TB, r *normalize.Reply) SubmitResult {
	t.Helper()
	res, err := Submit(testContext(t, 10*time.Second), e.b, e.dir, r)
	if err != nil {
		t.Fatalf("submitting %s: %v", r.ID, err)
	}
	return res
}

// publishRaw stores an arbitrary command body on a conversation's command
// subject, as a helpdesk talking to NATS directly would.
func (e *env) publishRaw(t testing.TB, conv normalize.ConversationID, msgID string, body []byte) {
	t.Helper()
	_, err := e.b.Publish(testContext(t, 10*time.Second), bus.Message{
		Subject: e.b.Subjects().Command(testRegion, testPlatform, testConnector, string(conv)),
		MsgID:   msgID,
		Data:    body,
	})
	if err != nil {
		t.Fatalf("publishing raw command %s: %v", msgID, err)
	}
}

// commandsLeft is the number of commands still in the outbox stream.
func (e *env) commandsLeft(t testing.TB) uint64 {
	t.Helper()
	info, err := e.reg.Commands.Info(testContext(t, 5*time.Second))
	if err != nil {
		t.Fatalf("reading command stream info: %v", err)
	}
	return info.State.Msgs
}

// statusLog collects the reply.sent and reply.failed events stored in the
// events stream, as a helpdesk would read them (after deduplication).
type statusLog struct {
	mu      sync.Mutex
	byReply map[string][]*normalize.Event
	changed chan struct{}
	errs    []error
}

func newStatusLog() *statusLog {
	return &statusLog{byReply: map[string][]*normalize.Event{}, changed: make(chan struct{})}
}

func (l *statusLog) follow(t testing.TB, b *bus.Bus) {
	t.Helper()
	ctx := testContext(t, 10*time.Second)
	filter := b.Options().SubjectPrefix + "." + bus.ClassEvent + "." + testRegion + ".*.*.*.status"
	cons, err := b.JS().OrderedConsumer(ctx, bus.StreamName(bus.StreamEvents, testRegion), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter},
	})
	if err != nil {
		t.Fatalf("following status events: %v", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := normalize.Decode(m.Data())
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("status event on %s: %w", m.Subject(), err))
		} else if ev.Data.Reply != nil {
			l.byReply[ev.Data.Reply.ID] = append(l.byReply[ev.Data.Reply.ID], ev)
		}
		close(l.changed)
		l.changed = make(chan struct{})
	})
	if err != nil {
		t.Fatalf("consuming status events: %v", err)
	}
	t.Cleanup(cc.Stop)
}

// wait returns the first status of replyID, waiting up to d.
func (l *statusLog) wait(t testing.TB, replyID string, d time.Duration) *normalize.Event {
	t.Helper()
	evs := l.waitN(t, replyID, 1, d)
	return evs[0]
}

// waitN waits until replyID has at least n status events.
func (l *statusLog) waitN(t testing.TB, replyID string, n int, d time.Duration) []*normalize.Event {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		l.mu.Lock()
		evs, ch := append([]*normalize.Event(nil), l.byReply[replyID]...), l.changed
		l.mu.Unlock()
		if len(evs) >= n {
			return evs
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatalf("timed out after %s waiting for %d status events of reply %s (have %d)", d, n, replyID, len(evs))
		}
	}
}

// get returns the status events of replyID seen so far.
func (l *statusLog) get(replyID string) []*normalize.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*normalize.Event(nil), l.byReply[replyID]...)
}

func (l *statusLog) check(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		t.Error(err)
	}
}

// sendCall is one SendPart call seen by a fakeSender.
type sendCall struct {
	Conv       normalize.ConversationID
	Part       string
	At         time.Time
	Err        error
	PlatformID string
}

// fakeSender is a Sender whose parts are the "|"-separated pieces of the
// reply text. script decides each call's failure (nil: success); policy is
// what Policy answers (its Limits.Account defaults to the address's).
type fakeSender struct {
	delay  time.Duration
	script func(c sendCall, nth int) error // nth counts calls for the same part, from 1
	policy connectors.Policy

	mu    sync.Mutex
	calls []sendCall
	seen  map[string]int
	ids   int
	tags  []string // the Admission.Tag of every Plan call
}

func (f *fakeSender) Policy(to connectors.Address) connectors.Policy {
	p := f.policy
	if p.Limits.Account == "" {
		p.Limits.Account = to.Account
	}
	return p
}

// admissions returns the tags Plan was called with, in order.
func (f *fakeSender) admissions() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.tags...)
}

func (f *fakeSender) Plan(r *normalize.Reply, _ connectors.Address, adm connectors.Admission) ([]connectors.Part, error) {
	f.mu.Lock()
	f.tags = append(f.tags, adm.Tag)
	f.mu.Unlock()
	if r.Text == "unplannable" {
		return nil, connectors.Permanent(normalize.ErrTooLarge, "", fmt.Errorf("reply cannot be rendered"))
	}
	var parts []connectors.Part
	for _, p := range strings.Split(r.Text, "|") {
		parts = append(parts, p)
	}
	return parts, nil
}

func (f *fakeSender) SendPart(ctx context.Context, to connectors.Address, part connectors.Part) (connectors.SentPart, error) {
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return connectors.SentPart{}, connectors.Transient("", ctx.Err())
		}
	}
	c := sendCall{Conv: to.ConversationID, Part: part.(string), At: time.Now()}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen == nil {
		f.seen = map[string]int{}
	}
	f.seen[c.Part]++
	if f.script != nil {
		c.Err = f.script(c, f.seen[c.Part])
	}
	if c.Err == nil {
		f.ids++
		c.PlatformID = fmt.Sprintf("pm-%d", f.ids)
	}
	f.calls = append(f.calls, c)
	return connectors.SentPart{PlatformID: c.PlatformID}, c.Err
}

// history returns every call so far.
func (f *fakeSender) history() []sendCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sendCall(nil), f.calls...)
}

// delivered returns the parts sent successfully, in order.
func (f *fakeSender) delivered() []sendCall {
	var out []sendCall
	for _, c := range f.history() {
		if c.Err == nil {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeSender) deliveredParts() []string {
	var out []string
	for _, c := range f.delivered() {
		out = append(out, c.Part)
	}
	return out
}

// runOutbox starts an Outbox with test-friendly timings and returns a
// function that stops it and waits for Run to return.
func (e *env) runOutbox(t testing.TB, sender Sender, tune func(*Options)) (*Outbox, func()) {
	t.Helper()
	o := e.newOutbox(t, sender, tune)
	return o, e.start(t, o)
}

// newOutbox builds an Outbox with test-friendly timings without running it.
func (e *env) newOutbox(t testing.TB, sender Sender, tune func(*Options)) *Outbox {
	t.Helper()
	opts := Options{
		Region:    testRegion,
		Bus:       e.b,
		Handles:   e.reg,
		Directory: e.dir,
		Ledger:    e.ledger,
		Lookup: func(id string) (Target, bool) {
			if id != testConnector {
				return Target{}, false
			}
			return Target{Sender: sender, Platform: testPlatform}, true
		},
		Logger:         testLogger(t),
		MaxAttempts:    10,
		InProcessRetry: 200 * time.Millisecond,
		RetryBase:      50 * time.Millisecond,
		RetryMax:       200 * time.Millisecond,
		AckWait:        2 * time.Second,
	}
	if tune != nil {
		tune(&opts)
	}
	o, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return o
}

// start runs o until the returned stop is called (or the test ends).
func (e *env) start(t testing.TB, o *Outbox) func() {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// testLogger sends the outbox's Warn and Error records to the test log.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// reply builds a reply command.
func reply(id string, conv normalize.ConversationID, text string) *normalize.Reply {
	return &normalize.Reply{ID: id, ConversationID: conv, Text: text}
}

// mustJSON encodes v.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder is an Observer that counts outcomes.
type recorder struct {
	mu       sync.Mutex
	sent     int
	failed   map[normalize.ErrorCode]int
	retried  map[connectors.Class]int
	deadLets int
	notify   chan struct{}
}

func newRecorder() *recorder {
	return &recorder{failed: map[normalize.ErrorCode]int{}, retried: map[connectors.Class]int{}, notify: make(chan struct{}, 1)}
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) Sent(string, int, time.Duration) {
	r.mu.Lock()
	r.sent++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Failed(_ string, code normalize.ErrorCode) {
	r.mu.Lock()
	r.failed[code]++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Retried(_ string, class connectors.Class) {
	r.mu.Lock()
	r.retried[class]++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Owned(int)                          {}
func (r *recorder) Send(string, string, string)        {}
func (r *recorder) Backlog(string, int, time.Duration) {}

func (r *recorder) DeadLettered(string) {
	r.mu.Lock()
	r.deadLets++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) sentCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

func (r *recorder) retriedCount(c connectors.Class) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retried[c]
}
