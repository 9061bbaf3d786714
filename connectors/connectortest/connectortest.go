// Package connectortest is the conformance suite every connector runs: the
// promises of the connectors contract, checked against the platform's
// simulator and a real in-process JetStream (no mocks of NATS).
//
// A connector's test calls Run with a Harness whose Setup starts the
// simulator for one subtest. The suite checks, for every connector:
//
//   - the descriptor is complete, New does no I/O, Plan is deterministic;
//   - the platform is acknowledged only after events are durable, and a
//     redelivery is stored once;
//   - Run returns promptly when cancelled, and (for an Exclusive
//     connector) as soon as its lease is lost;
//   - send failures are classified;
//   - health moves running → degraded → running through a storage outage;
//   - a poison update (events the server refuses) and an unmappable one
//     are acknowledged and dead-lettered, and the connector moves on;
//
// and, where the transport has them (a nil Fixture hook skips the check
// with the reason): a forged request answers 401 and a malformed one 400
// with nothing stored; the GET handshake; one request carrying several
// accounts; receipts naming the replies they cover and echoes of Parley's
// own sends recognised through the reply ledger; a late failure becoming
// exactly one late reply.failed.
//
// Env, Publisher, Cursors and HealthLog are exported for a connector's own
// tests of the same machinery.
package connectortest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Harness is what a connector hands the suite.
type Harness struct {
	Descriptor connectors.Descriptor
	// Setup starts the platform simulator for one subtest and returns a
	// fixture; it registers its own cleanup.
	Setup func(t *testing.T) *Fixture
}

// Fixture is one simulator, ready for one connector.
type Fixture struct {
	// Settings point the connector at the simulator.
	Settings connectors.Settings
	// PublicURL, if set, becomes Deps.PublicURL. When empty, Deps.PublicURL
	// is the URL of the suite's stand-in for Parley's HTTP server, which
	// serves a WebhookConnector's handler at /webhooks/{id}.
	PublicURL string
	// WebhookURL, if set, is called before Run with the full URL where the
	// connector's webhook is served, for simulators that must be told where
	// to deliver (those the connector cannot register itself with).
	WebhookURL func(url string)
	// Deliver makes the platform deliver n new distinct inbound messages
	// (webhook POSTs or queued updates); each must map to one event.
	Deliver func(ctx context.Context, t *testing.T, n int)
	// Redeliver makes the platform deliver the last message again, with
	// the same platform ids.
	Redeliver func(ctx context.Context, t *testing.T)
	// Acked returns how many deliveries the platform considers
	// acknowledged (polling: confirmed updates; webhooks: 2xx answers).
	Acked func() int
	// Address is a conversation the simulator knows, for sends.
	Address connectors.Address
	// FailNextSend makes the simulator fail the next send with a failure
	// of kind "retry_after", "transient" or "permanent".
	FailNextSend func(kind string)

	// DeliverPoison makes the platform deliver one update whose events are
	// over the Env's MaxPayload, so that the server refuses them.
	DeliverPoison func(ctx context.Context, t *testing.T)
	// DeliverUnmappable makes the platform deliver one well-formed update
	// the connector cannot map; nil when every well-formed update maps.
	DeliverUnmappable func(ctx context.Context, t *testing.T)

	// Webhook transports. DeliverForged and DeliverMalformed send one
	// request that is not the platform's (a wrong signature or secret) and
	// one that is not its format, and return the HTTP status answered.
	DeliverForged    func(ctx context.Context, t *testing.T, webhookURL string) int
	DeliverMalformed func(ctx context.Context, t *testing.T, webhookURL string) int
	// Handshake is the GET verification of platforms that have one.
	Handshake *Handshake
	// DeliverAccounts makes the platform deliver, in one request, one
	// message on each of n accounts of the connector; nil when a
	// connector serves one account.
	DeliverAccounts func(ctx context.Context, t *testing.T, n int)

	// Platforms that report on what the business sent. Each delivers a
	// report about sent, a message Parley sent (it is in the ledger).
	DeliverReceipt     func(ctx context.Context, t *testing.T, sent connectors.SentMessage)
	DeliverEcho        func(ctx context.Context, t *testing.T, sent connectors.SentMessage)
	DeliverLateFailure func(ctx context.Context, t *testing.T, sent connectors.SentMessage)
}

// Handshake describes a platform's GET verification of a webhook URL.
type Handshake struct {
	// Query is the query string the platform sends; valid false gives
	// one with a wrong verify token.
	Query func(valid bool) string
	// Challenge is what a valid handshake must answer, as the body.
	Challenge string
}

// Failure kinds of Fixture.FailNextSend.
const (
	FailRetryAfter = "retry_after"
	FailTransient  = "transient"
	FailPermanent  = "permanent"
)

// subtestTimeout bounds every wait of one subtest.
const subtestTimeout = 30 * time.Second

// cancelWithin is how fast Run must return once its context is cancelled.
const cancelWithin = 5 * time.Second

var platformPattern = regexp.MustCompile(`^[a-z][a-z0-9]{0,31}$`)

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, h Harness) {
	t.Run("descriptor is complete", func(t *testing.T) { testDescriptor(t, h) })
	t.Run("New does no I/O", func(t *testing.T) { testNewNoIO(t, h) })
	t.Run("Plan is deterministic", func(t *testing.T) { testPlanDeterministic(t, h) })
	t.Run("acks only after the events are durable", func(t *testing.T) { testAckAfterDurable(t, h) })
	t.Run("a redelivery is stored once", func(t *testing.T) { testRedelivery(t, h) })
	t.Run("Run returns promptly when cancelled", func(t *testing.T) { testCancel(t, h) })
	t.Run("Run stops at once when its lease is lost", func(t *testing.T) { testLeaseLost(t, h) })
	t.Run("send failures are classified", func(t *testing.T) { testSendClassified(t, h) })
	t.Run("health reports running, then degraded while events cannot be stored, then running", func(t *testing.T) { testHealth(t, h) })
	t.Run("a poison update is acknowledged and dead-lettered", func(t *testing.T) { testPoison(t, h) })
	t.Run("an unmappable update is acknowledged and dead-lettered", func(t *testing.T) { testUnmappable(t, h) })
	t.Run("a forged request is refused and stores nothing", func(t *testing.T) { testForged(t, h) })
	t.Run("a malformed request is refused and stores nothing", func(t *testing.T) { testMalformed(t, h) })
	t.Run("the GET handshake answers the challenge", func(t *testing.T) { testHandshake(t, h) })
	t.Run("one request with several accounts", func(t *testing.T) { testAccounts(t, h) })
	t.Run("a receipt names the replies it covers", func(t *testing.T) { testReceipt(t, h) })
	t.Run("an echo of Parley's own send is not a message", func(t *testing.T) { testEcho(t, h) })
	t.Run("a late failure becomes one late reply.failed", func(t *testing.T) { testLateFailure(t, h) })
}

// connectorID is the id of the connector under test.
func connectorID(h Harness) string { return "ct-" + h.Descriptor.Platform }

// setup is one subtest's world: simulator, JetStream, stand-in HTTP
// server and the connector.
type setup struct {
	fx         *Fixture
	env        *Env
	conn       connectors.Connector
	webhookURL string
}

func start(t *testing.T, h Harness) *setup {
	t.Helper()
	fx := h.Setup(t)
	id := connectorID(h)
	env := NewEnv(t, h.Descriptor.Platform, id)

	var hook atomic.Pointer[http.Handler]
	mux := http.NewServeMux()
	mux.HandleFunc("/webhooks/"+id, func(w http.ResponseWriter, r *http.Request) {
		hp := hook.Load()
		if hp == nil {
			http.Error(w, `{"error":"connector not ready"}`, http.StatusServiceUnavailable)
			return
		}
		(*hp).ServeHTTP(w, r)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	env.Deps.PublicURL = srv.URL
	if fx.PublicURL != "" {
		env.Deps.PublicURL = fx.PublicURL
	}
	conn, err := h.Descriptor.New(env.Deps, fx.Settings)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.UsePolicy(conn)
	if wc, ok := conn.(connectors.WebhookConnector); ok {
		handler := wc.Webhook()
		hook.Store(&handler)
	}
	if fx.WebhookURL != nil {
		fx.WebhookURL(srv.URL + "/webhooks/" + id)
	}
	return &setup{fx: fx, env: env, conn: conn, webhookURL: srv.URL + "/webhooks/" + id}
}

// running is a connector's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// startRun runs conn until the test ends (or stop is called), and checks
// that Run then returns promptly.
func startRun(t *testing.T, conn connectors.Connector) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- conn.Run(ctx) }()
	t.Cleanup(func() {
		if _, err := r.stop(); err != nil {
			t.Errorf("stopping Run: %v", err)
		}
	})
	return r
}

// errNotStopped is stop's error when Run outlives cancelWithin.
var errNotStopped = errors.New("Run did not return within " + cancelWithin.String() + " of cancellation")

// stop cancels Run and waits at most cancelWithin for it; it returns how
// long Run took and, if it returned at all, what it returned.
func (r *running) stop() (time.Duration, error) {
	r.cancel()
	began := time.Now()
	timer := time.NewTimer(cancelWithin)
	defer timer.Stop()
	select {
	case err, ok := <-r.done:
		if !ok {
			return 0, nil // already stopped
		}
		close(r.done)
		return time.Since(began), err
	case <-timer.C:
		return time.Since(began), errNotStopped
	}
}

func subtestContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), subtestTimeout)
	t.Cleanup(cancel)
	return ctx
}

func testDescriptor(t *testing.T, h Harness) {
	d := h.Descriptor
	if !platformPattern.MatchString(d.Platform) {
		t.Errorf("Platform %q must match %s", d.Platform, platformPattern)
	}
	if d.Name == "" {
		t.Error("Name is empty")
	}
	if d.New == nil {
		t.Error("New is nil")
	}
	if d.Validate == nil {
		t.Error("Validate is nil")
	}
	if d.Sample == "" {
		t.Error("Sample is empty")
	}
	if h.Setup != nil && d.Validate != nil {
		fx := h.Setup(t)
		if problems := d.Validate(fx.Settings); len(problems) > 0 {
			t.Errorf("Validate(fixture settings) = %v, want no problems", problems)
		}
	}
}

// countingTransport fails every request and counts it.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	c.n.Add(1)
	return nil, errors.New("connectortest: New must not make requests")
}

// countingDeps records any use of the dependencies.
type countingDeps struct{ n atomic.Int64 }

func (c *countingDeps) Publish(context.Context, ...*normalize.Event) error {
	c.n.Add(1)
	return connectors.ErrNotDurable
}

func (c *countingDeps) Get(context.Context, string) ([]byte, error) {
	c.n.Add(1)
	return nil, connectors.ErrNotFound
}

func (c *countingDeps) Put(context.Context, string, []byte) error {
	c.n.Add(1)
	return nil
}

func (c *countingDeps) OpenMedia(_ context.Context, id normalize.MediaID) (io.ReadCloser, connectors.MediaInfo, error) {
	c.n.Add(1)
	return nil, connectors.MediaInfo{}, fmt.Errorf("media %s: %w", id, connectors.ErrNotFound)
}

func (c *countingDeps) SetReachable(context.Context, normalize.ConversationID, bool, string) error {
	c.n.Add(1)
	return nil
}

func (c *countingDeps) Reject(context.Context, connectors.Rejected) error {
	c.n.Add(1)
	return connectors.ErrNotDurable
}

func (c *countingDeps) Sent(context.Context, string) (connectors.SentMessage, error) {
	c.n.Add(1)
	return connectors.SentMessage{}, connectors.ErrNotFound
}

func (c *countingDeps) SentUntil(context.Context, normalize.ConversationID, time.Time) ([]connectors.SentMessage, error) {
	c.n.Add(1)
	return nil, nil
}

func (c *countingDeps) ReportLateFailure(context.Context, connectors.SentMessage, normalize.ReplyError) error {
	c.n.Add(1)
	return connectors.ErrNotDurable
}

func testNewNoIO(t *testing.T, h Harness) {
	fx := h.Setup(t)
	tr := &countingTransport{}
	used := &countingDeps{}
	deps := connectors.Deps{
		ID:            connectorID(h),
		Platform:      h.Descriptor.Platform,
		Region:        Region,
		Logger:        TestLogger(t),
		Publisher:     used,
		Rejects:       used,
		Cursors:       used,
		Conversations: used,
		Ledger:        used,
		Media:         used,
		DataDir:       t.TempDir() + "/not-created",
		HTTPClient:    &http.Client{Transport: tr},
		PublicURL:     "http://127.0.0.1:1",
		Now:           time.Now,
		OnHealth:      func(connectors.Health) {},
	}
	conn, err := h.Descriptor.New(deps, fx.Settings)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if conn == nil {
		t.Fatal("New returned a nil connector")
	}
	_ = conn.Health()
	if wc, ok := conn.(connectors.WebhookConnector); ok && wc.Webhook() == nil {
		t.Error("Webhook() returned nil; a connector without a webhook answers 404 instead")
	}
	l := conn.Policy(fx.Address).Limits
	if l.PerAccount < 0 || l.Burst < 1 || l.Interval < 0 {
		t.Errorf("Policy(%v).Limits = %+v: the rate must not be negative and the burst at least 1", fx.Address, l)
	}
	if l.PerAccount > 0 && l.Account == "" {
		t.Errorf("Policy(%v).Limits has a per-account rate but names no account: budgets are per account", fx.Address)
	}
	if n := tr.n.Load(); n != 0 {
		t.Errorf("New (or Policy) made %d HTTP requests, want none", n)
	}
	if n := used.n.Load(); n != 0 {
		t.Errorf("New used the publisher, rejects, cursors, conversations, ledger or media %d times, want none", n)
	}
	if _, err := os.Stat(deps.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New created its data directory (stat: %v); only Run or Pair may", err)
	}
}

func testAckAfterDurable(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	const n = 3
	before := s.fx.Acked()

	s.env.Publisher.SetDown(true)
	calls := s.env.Publisher.Calls()
	s.fx.Deliver(ctx, t, n)
	// Two attempts: the platform's delivery (or the poll) and its retry
	// both met the outage, and neither may have been acknowledged.
	WaitFor(ctx, t, "the connector tries to store the events twice", func() bool {
		if got := s.fx.Acked(); got != before {
			t.Fatalf("while events cannot be stored, acknowledged deliveries went from %d to %d", before, got)
		}
		return s.env.Publisher.Calls() >= calls+2
	})
	if got := s.fx.Acked(); got != before {
		t.Fatalf("while events cannot be stored, acknowledged deliveries went from %d to %d", before, got)
	}
	if got, err := s.env.EventCount(ctx); err != nil || got != 0 {
		t.Fatalf("while the publisher is down, %d events are stored (err %v), want 0", got, err)
	}

	s.env.Publisher.SetDown(false)
	s.env.WaitEvents(ctx, t, n)
	WaitFor(ctx, t, "the platform sees the deliveries acknowledged", func() bool { return s.fx.Acked() >= before+n })
	evs, err := s.env.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("stored %d events, want exactly %d", len(evs), n)
	}
	seen := map[normalize.EventID]bool{}
	for _, ev := range evs {
		if seen[ev.ID] {
			t.Errorf("event id %s stored twice", ev.ID)
		}
		seen[ev.ID] = true
	}
}

func testRedelivery(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	before := s.fx.Acked()

	s.fx.Deliver(ctx, t, 1)
	first := s.env.WaitEvents(ctx, t, 1)
	WaitFor(ctx, t, "the first delivery is acknowledged", func() bool { return s.fx.Acked() >= before+1 })
	dups := s.env.Publisher.Duplicates()

	s.fx.Redeliver(ctx, t)
	WaitFor(ctx, t, "the redelivery is published and dropped by JetStream as a duplicate", func() bool {
		return s.env.Publisher.Duplicates() > dups
	})
	WaitFor(ctx, t, "the redelivery is acknowledged", func() bool { return s.fx.Acked() >= before+2 })
	evs, err := s.env.Events(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Fatalf("after a redelivery, %d events are stored, want 1", len(evs))
	}
	if evs[0].ID != first[0].ID {
		t.Errorf("stored event id changed from %s to %s", first[0].ID, evs[0].ID)
	}
}

func testCancel(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)

	// Idle: for a poller, in the middle of a long poll.
	r := startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	took, err := r.stop()
	if err != nil {
		t.Fatalf("Run after cancellation while idle: %v (after %s)", err, took)
	}

	// Busy: retrying events that cannot be stored.
	from := len(s.env.Health.All())
	r = startRun(t, s.conn)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, from)
	s.env.Publisher.SetDown(true)
	calls := s.env.Publisher.Calls()
	s.fx.Deliver(ctx, t, 1)
	WaitFor(ctx, t, "the connector tries to store the event", func() bool { return s.env.Publisher.Calls() > calls })
	took, err = r.stop()
	if err != nil {
		t.Fatalf("Run after cancellation while events cannot be stored: %v (after %s)", err, took)
	}
}

func testSendClassified(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	tests := []struct {
		kind  string
		class connectors.Class
	}{
		{FailRetryAfter, connectors.ClassRetryAfter},
		{FailTransient, connectors.ClassTransient},
		{FailPermanent, connectors.ClassPermanent},
	}
	for i, tc := range tests {
		reply := &normalize.Reply{ID: "ct-" + tc.kind, ConversationID: s.fx.Address.ConversationID, Text: "classified " + tc.kind}
		parts, err := s.conn.Plan(reply, s.fx.Address, connectors.Admission{})
		if err != nil || len(parts) == 0 {
			t.Fatalf("Plan(%q) = %d parts, %v", reply.Text, len(parts), err)
		}
		s.fx.FailNextSend(tc.kind)
		_, err = s.conn.SendPart(ctx, s.fx.Address, parts[0])
		if err == nil {
			t.Fatalf("case %d: SendPart after FailNextSend(%q) succeeded", i, tc.kind)
		}
		got := connectors.Classify(err)
		if got.Class != tc.class {
			t.Errorf("FailNextSend(%q): class %s, want %s (error: %v)", tc.kind, got.Class, tc.class, err)
		}
		if tc.class == connectors.ClassRetryAfter && got.RetryAfter <= 0 {
			t.Errorf("FailNextSend(%q): RetryAfter %s, want the platform's positive hint", tc.kind, got.RetryAfter)
		}
		if tc.class == connectors.ClassPermanent && got.Code == "" {
			t.Errorf("FailNextSend(%q): permanent error without a reply.failed code", tc.kind)
		}
	}
	reply := &normalize.Reply{ID: "ct-ok", ConversationID: s.fx.Address.ConversationID, Text: "delivered"}
	parts, err := s.conn.Plan(reply, s.fx.Address, connectors.Admission{})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := s.conn.SendPart(ctx, s.fx.Address, parts[0])
	if err != nil {
		t.Fatalf("SendPart without an injected failure: %v", err)
	}
	if sent.PlatformID == "" {
		t.Error("SendPart succeeded without a platform message id")
	}
}

func testHealth(t *testing.T, h Harness) {
	ctx := subtestContext(t)
	s := start(t, h)
	startRun(t, s.conn)
	up := s.env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	if got := s.conn.Health().State; got != normalize.StateRunning {
		t.Errorf("Health() = %s after reporting running", got)
	}

	s.env.Publisher.SetDown(true)
	s.fx.Deliver(ctx, t, 1)
	down := s.env.Health.Wait(ctx, t, normalize.StateDegraded, up+1)
	if reason := s.env.Health.All()[down].Reason; reason == "" {
		t.Error("degraded health without a reason")
	}
	if got := s.conn.Health().State; got != normalize.StateDegraded {
		t.Errorf("Health() = %s while events cannot be stored, want degraded", got)
	}

	s.env.Publisher.SetDown(false)
	s.env.Health.Wait(ctx, t, normalize.StateRunning, down+1)
	s.env.WaitEvents(ctx, t, 1)
}
