package connectortest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/ingest"
	"github.com/parley-gateway/parley/internal/ledger"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// Region is the region every Env provisions.
const Region = "ct"

// MaxPayload is the Env's NATS max payload: small, so that a test can make
// an update whose events the server refuses without sending megabytes.
const MaxPayload = 128 << 10

// Env is a real Parley environment for one connector under test: an
// in-process JetStream with the region provisioned, and Deps built on it
// exactly as the gateway builds them — ingest's publisher and dead-letter
// keeper, the directory, the reply ledger, the media store — with an outage
// switch in front of the publisher.
type Env struct {
	Bus       *bus.Bus
	Region    *bus.Region
	Directory *directory.Store
	Ledger    *ledger.Ledger
	Publisher *Publisher
	Cursors   *Cursors
	Health    *HealthLog
	Metrics   *metrics.Metrics
	// Media is Deps.Media: the region's object store, as Parley wires it.
	// PutMedia stores bytes in it.
	Media *media.Store
	// Deps is what the connector is built with. Tests may change fields
	// (PublicURL, Now) before calling New.
	Deps connectors.Deps

	platform, id string
	policy       atomic.Pointer[func(connectors.Address) connectors.Policy]
}

// NewEnv starts JetStream, provisions Region and builds Deps for a
// connector of platform with id. Everything stops when the test ends.
func NewEnv(t testing.TB, platform, id string) *Env {
	t.Helper()
	b := bustest.Start(t, func(o *bus.Options) { o.EmbeddedMaxPayload = MaxPayload })
	r := bustest.ProvisionRegion(t, b, Region)
	dir := directory.New(r.Directory, Region)
	m := metrics.New()
	e := &Env{
		Bus:       b,
		Region:    r,
		Directory: dir,
		Ledger:    ledger.New(b, r.Ledger, Region, dir),
		Cursors:   &Cursors{kv: r.Cursors, scope: bus.Token(id)},
		Health:    &HealthLog{},
		Metrics:   m,
		Media:     media.NewStore(r),
		platform:  platform,
		id:        id,
	}
	log := TestLogger(t).With("connector", id, "platform", platform, "region", Region)
	real := ingest.New(ingest.Options{
		Bus: b, Region: Region, Platform: platform, Connector: id, Directory: dir, Metrics: m, Logger: log,
		Policy: e.policyOf,
	})
	e.Publisher = &Publisher{t: t, real: real, metrics: m, want: normalize.Source(Region, platform, id)}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // everything a test talks to is on 127.0.0.1
	t.Cleanup(tr.CloseIdleConnections)
	e.Deps = connectors.Deps{
		ID:            id,
		Platform:      platform,
		Region:        Region,
		Logger:        log,
		Publisher:     e.Publisher,
		Rejects:       ingest.NewRejects(b, Region, platform, id, m),
		Cursors:       e.Cursors,
		Conversations: ingest.NewConversations(dir),
		Ledger:        e.Ledger.For(id, platform),
		Media:         e.Media,
		HTTPClient:    &http.Client{Transport: tr, Timeout: 30 * time.Second},
		DataDir:       t.TempDir(),
		Now:           time.Now,
		OnHealth:      e.Health.Record,
	}
	return e
}

// UsePolicy makes ingest ask conn for the reply window of each event, as the
// gateway does once the connector is built.
func (e *Env) UsePolicy(conn connectors.Connector) {
	f := conn.Policy
	e.policy.Store(&f)
}

func (e *Env) policyOf(to connectors.Address) connectors.Policy {
	if f := e.policy.Load(); f != nil {
		return (*f)(to)
	}
	return connectors.Policy{}
}

// RecordSent records sent parts in the reply ledger as the outbox does
// when it writes their sent-marker.
func (e *Env) RecordSent(t testing.TB, sent ...connectors.SentMessage) {
	t.Helper()
	msgs, err := e.Ledger.Messages(e.id, sent...)
	if err != nil {
		t.Fatalf("ledger messages: %v", err)
	}
	if _, err := e.Bus.Publish(t.Context(), msgs...); err != nil {
		t.Fatalf("recording sent parts: %v", err)
	}
}

// PutMedia stores data in the region's object store as the media worker
// stores a downloaded attachment, so that replies can send it back by id.
func (e *Env) PutMedia(t testing.TB, id normalize.MediaID, contentType, filename string, data []byte) {
	t.Helper()
	if _, err := e.Region.Media.Put(t.Context(), media.ObjectMeta(id, contentType, filename), bytes.NewReader(data)); err != nil {
		t.Fatalf("storing media %s: %v", id, err)
	}
}

// TestLogger logs at Debug to the test's output, shown when it fails or
// with -v.
func TestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Events returns every event stored in the region's event stream, in order.
func (e *Env) Events(ctx context.Context) ([]*normalize.Event, error) {
	msgs, err := streamMessages(ctx, e.Region.Events, "")
	if err != nil {
		return nil, err
	}
	out := make([]*normalize.Event, 0, len(msgs))
	for _, m := range msgs {
		ev, err := normalize.Decode(m.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding event %d: %w", m.Sequence, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// InboundDeadLetters returns the updates kept on the region's inbound
// dead-letter subject, oldest first.
func (e *Env) InboundDeadLetters(ctx context.Context) ([]*jetstream.RawStreamMsg, error) {
	return streamMessages(ctx, e.Region.DLQ, e.Bus.Subjects().InboundDLQ(Region, e.platform, e.id))
}

// streamMessages reads every message of s on subject ("": all).
func streamMessages(ctx context.Context, s jetstream.Stream, subject string) ([]*jetstream.RawStreamMsg, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream info: %w", err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading message %d: %w", seq, err)
		}
		if subject == "" || m.Subject == subject {
			out = append(out, m)
		}
	}
	return out, nil
}

// EventCount returns how many events the region's stream holds.
func (e *Env) EventCount(ctx context.Context) (int, error) {
	info, err := e.Region.Events.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading event stream info: %w", err)
	}
	return int(info.State.Msgs), nil
}

// WaitEvents waits until the stream holds at least n events and returns
// them all; it fails the test when ctx ends first.
func (e *Env) WaitEvents(ctx context.Context, t testing.TB, n int) []*normalize.Event {
	t.Helper()
	WaitFor(ctx, t, fmt.Sprintf("%d events are stored", n), func() bool {
		got, err := e.EventCount(ctx)
		return err == nil && got >= n
	})
	evs, err := e.Events(ctx)
	if err != nil {
		t.Fatalf("reading events: %v", err)
	}
	return evs
}

// WaitFor polls cond every few milliseconds until it holds, and fails the
// test naming what it waited for when ctx ends first: wait.Until, for the
// connectors' tests that already wait through this package.
func WaitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	wait.Until(ctx, t, what, cond)
}

// Publisher is ingest's publisher, as Parley wires it, with an outage
// switch: SetDown makes it fail with ErrNotDurable without touching NATS.
// It fails the test when a connector publishes an event of another source
// or one that does not encode.
type Publisher struct {
	t       testing.TB
	real    *ingest.Publisher
	metrics *metrics.Metrics
	want    string // the CloudEvents source of the connector's events

	down  atomic.Bool
	calls atomic.Int64
}

// SetDown switches the outage on or off.
func (p *Publisher) SetDown(down bool) { p.down.Store(down) }

// Calls returns how many times Publish was called, failed calls included.
func (p *Publisher) Calls() int64 { return p.calls.Load() }

// Stored returns how many events JetStream stored as new.
func (p *Publisher) Stored() int64 {
	return int64(p.metrics.Total("parley_events_published_total"))
}

// Duplicates returns how many published events JetStream dropped as
// duplicates of stored ones.
func (p *Publisher) Duplicates() int64 {
	return int64(p.metrics.Total("parley_events_duplicate_total"))
}

// Probe implements connectors.Prober.
func (p *Publisher) Probe(ctx context.Context) error {
	if p.down.Load() {
		return fmt.Errorf("probing: nats unavailable (simulated): %w", connectors.ErrNotDurable)
	}
	return p.real.Probe(ctx)
}

// Publish implements connectors.Publisher.
func (p *Publisher) Publish(ctx context.Context, events ...*normalize.Event) error {
	p.calls.Add(1)
	if p.down.Load() {
		return fmt.Errorf("publishing %d events: nats unavailable (simulated): %w", len(events), connectors.ErrNotDurable)
	}
	for _, ev := range events {
		if ev == nil {
			continue
		}
		if ev.Source != p.want {
			p.t.Errorf("connector published event %s with source %q, want %q", ev.ID, ev.Source, p.want)
		}
		if err := ev.Validate(); err != nil {
			p.t.Errorf("connector published an invalid event: %v", err)
		}
	}
	return p.real.Publish(ctx, events...)
}

// Cursors is connectors.Store over the region's cursors bucket, scoped to
// one connector as ingest.Cursors scopes it, counting calls.
type Cursors struct {
	kv    jetstream.KeyValue
	scope string
	gets  atomic.Int64
	puts  atomic.Int64
}

func (c *Cursors) key(k string) string { return c.scope + "." + bus.Token(k) }

// Get implements connectors.Store.
func (c *Cursors) Get(ctx context.Context, key string) ([]byte, error) {
	c.gets.Add(1)
	e, err := c.kv.Get(ctx, c.key(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("cursor %s: %w", key, connectors.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading cursor %s: %w", key, err)
	}
	return e.Value(), nil
}

// Put implements connectors.Store.
func (c *Cursors) Put(ctx context.Context, key string, value []byte) error {
	c.puts.Add(1)
	if _, err := c.kv.Put(ctx, c.key(key), value); err != nil {
		return fmt.Errorf("writing cursor %s: %w", key, err)
	}
	return nil
}

// Puts returns how many times Put was called.
func (c *Cursors) Puts() int64 { return c.puts.Load() }

// HealthLog records every health change a connector reports through
// Deps.OnHealth.
type HealthLog struct {
	mu  sync.Mutex
	log []connectors.Health
}

// Record is a Deps.OnHealth.
func (h *HealthLog) Record(hl connectors.Health) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, hl)
}

// All returns the changes so far, oldest first.
func (h *HealthLog) All() []connectors.Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.log)
}

// Wait waits for a change to state at index from or later and returns its
// index; it fails the test when ctx ends first.
func (h *HealthLog) Wait(ctx context.Context, t testing.TB, state normalize.State, from int) int {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		for i, hl := range h.All() {
			if i >= from && hl.State == state {
				return i
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for health %s after change %d; reported so far: %s", state, from, h)
		case <-tick.C:
		}
	}
}

// String lists the states reported so far.
func (h *HealthLog) String() string {
	all := h.All()
	s := "["
	for i, hl := range all {
		if i > 0 {
			s += " → "
		}
		s += string(hl.State)
	}
	return s + "]"
}
