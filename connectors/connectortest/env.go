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
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/normalize"
)

// Region is the region every Env provisions.
const Region = "ct"

// Env is a real Parley environment for one connector under test: an
// in-process JetStream with the region provisioned, and Deps built on it.
type Env struct {
	Bus       *bus.Bus
	Region    *bus.Region
	Directory *directory.Store
	Publisher *Publisher
	Cursors   *Cursors
	Health    *HealthLog
	// Media is Deps.Media: the region's object store, as Parley wires it.
	// PutMedia stores bytes in it.
	Media *media.Store
	// Deps is what the connector is built with. Tests may change fields
	// (PublicURL, Now) before calling New.
	Deps connectors.Deps
}

// NewEnv starts JetStream, provisions Region and builds Deps for a
// connector of platform with id. Everything stops when the test ends.
func NewEnv(t testing.TB, platform, id string) *Env {
	t.Helper()
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, Region)
	dir := directory.New(r.Directory, Region)
	e := &Env{
		Bus:       b,
		Region:    r,
		Directory: dir,
		Publisher: &Publisher{t: t, bus: b, dir: dir, want: normalize.Source(Region, platform, id)},
		Cursors:   &Cursors{kv: r.Cursors, scope: bus.Token(id)},
		Health:    &HealthLog{},
		Media:     media.NewStore(r),
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // everything a test talks to is on 127.0.0.1
	t.Cleanup(tr.CloseIdleConnections)
	e.Deps = connectors.Deps{
		ID:            id,
		Platform:      platform,
		Region:        Region,
		Logger:        TestLogger(t).With("connector", id, "platform", platform, "region", Region),
		Publisher:     e.Publisher,
		Cursors:       e.Cursors,
		Conversations: dir,
		Media:         e.Media,
		HTTPClient:    &http.Client{Transport: tr, Timeout: 30 * time.Second},
		Now:           time.Now,
		OnHealth:      e.Health.Record,
	}
	return e
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
	info, err := e.Region.Events.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading event stream info: %w", err)
	}
	var out []*normalize.Event
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := e.Region.Events.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading event %d: %w", seq, err)
		}
		ev, err := normalize.Decode(m.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding event %d: %w", seq, err)
		}
		out = append(out, ev)
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
// test naming what it waited for when ctx ends first.
func WaitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}

// Publisher is connectors.Publisher over bus.Publish, as Parley wires it:
// each event encoded as CloudEvents JSON on its event subject with its id as
// Nats-Msg-Id, and its conversation recorded in the directory once stored.
// SetDown makes it fail with ErrNotDurable without touching NATS.
type Publisher struct {
	t    testing.TB
	bus  *bus.Bus
	dir  *directory.Store
	want string // the CloudEvents source of the connector's events

	down       atomic.Bool
	calls      atomic.Int64
	stored     atomic.Int64
	duplicates atomic.Int64
}

// SetDown switches the outage on or off.
func (p *Publisher) SetDown(down bool) { p.down.Store(down) }

// Calls returns how many times Publish was called, failed calls included.
func (p *Publisher) Calls() int64 { return p.calls.Load() }

// Stored returns how many events JetStream stored as new.
func (p *Publisher) Stored() int64 { return p.stored.Load() }

// Duplicates returns how many published events JetStream dropped as
// duplicates of stored ones.
func (p *Publisher) Duplicates() int64 { return p.duplicates.Load() }

// Probe implements connectors.Prober.
func (p *Publisher) Probe(ctx context.Context) error {
	if p.down.Load() {
		return fmt.Errorf("probing: nats unavailable (simulated): %w", connectors.ErrNotDurable)
	}
	if _, err := p.bus.JS().AccountInfo(ctx); err != nil {
		return fmt.Errorf("probing jetstream: %w: %w", connectors.ErrNotDurable, err)
	}
	return nil
}

// Publish implements connectors.Publisher.
func (p *Publisher) Publish(ctx context.Context, events ...*normalize.Event) error {
	p.calls.Add(1)
	if p.down.Load() {
		return fmt.Errorf("publishing %d events: nats unavailable (simulated): %w", len(events), connectors.ErrNotDurable)
	}
	msgs := make([]bus.Message, 0, len(events))
	for _, ev := range events {
		data, err := normalize.Encode(ev)
		if err != nil {
			// A connector must never produce this: fail the test loudly.
			p.t.Errorf("connector published an invalid event: %v", err)
			return fmt.Errorf("encoding event %s: %w: %w", ev.ID, connectors.ErrNotDurable, err)
		}
		if ev.Source != p.want {
			p.t.Errorf("connector published event %s with source %q, want %q", ev.ID, ev.Source, p.want)
		}
		d := ev.Data
		msgs = append(msgs, bus.Message{
			Subject: p.bus.Subjects().Event(d.Region, d.Platform, d.Connector, string(ev.Subject), ev.Type.Kind()),
			MsgID:   string(ev.ID),
			Data:    data,
		})
	}
	results, err := p.bus.Publish(ctx, msgs...)
	if err != nil {
		return fmt.Errorf("publishing %d events: %w: %w", len(events), connectors.ErrNotDurable, err)
	}
	for _, r := range results {
		if r.Duplicate {
			p.duplicates.Add(1)
		} else {
			p.stored.Add(1)
		}
	}
	for _, ev := range events {
		if err := p.dir.RecordInbound(ctx, ev, "", 0); err != nil {
			p.t.Logf("connectortest: recording conversation %s: %v", ev.Subject, err)
		}
	}
	return nil
}

// Cursors is connectors.Store over the region's cursors bucket, scoped to
// one connector.
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
