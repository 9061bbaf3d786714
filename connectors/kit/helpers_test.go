package kit_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

// publisher is a connectors.Publisher that records every call and answers
// with what answer returns (nil: stored).
type publisher struct {
	answer func(ctx context.Context, events []*normalize.Event) error

	mu    sync.Mutex
	calls [][]normalize.EventID
}

func (p *publisher) Publish(ctx context.Context, events ...*normalize.Event) error {
	ids := make([]normalize.EventID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	p.mu.Lock()
	p.calls = append(p.calls, ids)
	p.mu.Unlock()
	if p.answer == nil {
		return nil
	}
	return p.answer(ctx, events)
}

// Calls returns the event ids of every Publish call, in order.
func (p *publisher) Calls() [][]normalize.EventID {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// refusing answers errRefused to any call that carries one of ids, and
// stores the rest.
func refusing(ids ...normalize.EventID) func(context.Context, []*normalize.Event) error {
	return func(_ context.Context, events []*normalize.Event) error {
		for _, e := range events {
			if slices.Contains(ids, e.ID) {
				return errRefused
			}
		}
		return nil
	}
}

// failing answers err to every call.
func failing(err error) func(context.Context, []*normalize.Event) error {
	return func(context.Context, []*normalize.Event) error { return err }
}

// The errors of a Publisher, wrapped as the real one wraps them.
var (
	errRefused = fmt.Errorf("nats: maximum payload exceeded: %w", connectors.ErrRefused)
	errDown    = fmt.Errorf("nats: no responders available for request: %w", connectors.ErrNotDurable)
)

// rejects is a connectors.Rejects that records what it keeps and fails
// with err when set.
type rejects struct {
	err error

	mu   sync.Mutex
	kept []connectors.Rejected
}

func (r *rejects) Reject(_ context.Context, rj connectors.Rejected) error {
	if r.err != nil {
		return r.err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kept = append(r.kept, rj)
	return nil
}

// Kept returns the updates kept so far.
func (r *rejects) Kept() []connectors.Rejected {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.kept)
}

// prober is a publisher that can also probe storage.
type prober struct {
	publisher
	probe func(ctx context.Context) error

	mu     sync.Mutex
	probes int
}

func (p *prober) Probe(ctx context.Context) error {
	p.mu.Lock()
	p.probes++
	p.mu.Unlock()
	return p.probe(ctx)
}

// Probes returns how many times Probe was called.
func (p *prober) Probes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.probes
}

// healthLog collects every health report, in order.
type healthLog struct {
	mu      sync.Mutex
	reports []connectors.Health
}

func (l *healthLog) record(h connectors.Health) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reports = append(l.reports, h)
}

// States returns the states reported so far, in order.
func (l *healthLog) States() []normalize.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]normalize.State, len(l.reports))
	for i, h := range l.reports {
		out[i] = h.State
	}
	return out
}

// Reports returns every report so far, in order.
func (l *healthLog) Reports() []connectors.Health {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reports)
}

// clock is a settable time for Deps.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// start is when the tests' clocks start.
var start = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

// inbound is the store step of a connector with pub and rej, and its
// health and reports.
type inbound struct {
	in     *kit.Inbound
	health *kit.Health
	log    *healthLog
}

func newInbound(t *testing.T, pub connectors.Publisher, rej connectors.Rejects) inbound {
	t.Helper()
	log := &healthLog{}
	deps := connectors.Deps{ID: "kt", Platform: "kittest", Region: "eu", Publisher: pub, Rejects: rej, OnHealth: log.record}
	health := kit.NewHealth(deps)
	return inbound{in: kit.NewInbound(deps, health), health: health, log: log}
}

// update returns a well-formed update of one event per id.
func update(id string, events ...normalize.EventID) kit.Update {
	u := kit.Update{ID: id, Raw: []byte(`{"update_id":"` + id + `"}`)}
	for _, e := range events {
		u.Events = append(u.Events, &normalize.Event{ID: e, Type: normalize.TypeMessageReceived})
	}
	return u
}

var (
	_ connectors.Publisher = (*publisher)(nil)
	_ connectors.Prober    = (*prober)(nil)
	_ connectors.Rejects   = (*rejects)(nil)
)
