package fakechat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/normalize"
)

// yamlSettings is a platform block decoded strictly, as Parley's config
// decodes it.
type yamlSettings string

func (s yamlSettings) DecodeSettings(v any) error {
	dec := yaml.NewDecoder(strings.NewReader(string(s)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("decoding settings: %w", err)
	}
	return nil
}

// testNow is the clock of every test connector.
var testNow = time.Date(2026, 11, 20, 9, 30, 0, 120_000_000, time.UTC)

// fakePublisher stores events in memory and drops a repeated id, as
// JetStream's duplicate window does. down makes it fail as storage
// unavailable.
type fakePublisher struct {
	mu     sync.Mutex
	events []*normalize.Event
	ids    map[normalize.EventID]bool
	down   bool
	probes int
}

func (p *fakePublisher) Publish(_ context.Context, events ...*normalize.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return fmt.Errorf("%w: nats: no responders", connectors.ErrNotDurable)
	}
	if p.ids == nil {
		p.ids = map[normalize.EventID]bool{}
	}
	for _, e := range events {
		if err := e.Validate(); err != nil {
			return fmt.Errorf("%w: %w", connectors.ErrRefused, err)
		}
		if !p.ids[e.ID] {
			p.ids[e.ID] = true
			p.events = append(p.events, e)
		}
	}
	return nil
}

func (p *fakePublisher) Probe(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.probes++
	if p.down {
		return connectors.ErrNotDurable
	}
	return nil
}

func (p *fakePublisher) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

func (p *fakePublisher) stored() []*normalize.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// fakeRejects keeps dead-lettered updates.
type fakeRejects struct {
	mu       sync.Mutex
	rejected []connectors.Rejected
}

func (r *fakeRejects) Reject(_ context.Context, rej connectors.Rejected) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = append(r.rejected, rej)
	return nil
}

func (r *fakeRejects) all() []connectors.Rejected {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rejected)
}

// fakeLedger is the reply ledger: what Parley sent, by platform id.
type fakeLedger struct {
	mu       sync.Mutex
	sent     []connectors.SentMessage
	late     []lateReport
	reported map[string]bool // reply ids reported, for at most once
	err      error           // every lookup fails with it when set
}

type lateReport struct {
	m       connectors.SentMessage
	failure normalize.ReplyError
}

func (l *fakeLedger) add(m connectors.SentMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, m)
}

func (l *fakeLedger) Sent(_ context.Context, id string) (connectors.SentMessage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return connectors.SentMessage{}, l.err
	}
	for _, m := range l.sent {
		if m.PlatformID == id {
			return m, nil
		}
	}
	return connectors.SentMessage{}, fmt.Errorf("message %s: %w", id, connectors.ErrNotFound)
}

func (l *fakeLedger) SentUntil(_ context.Context, conv normalize.ConversationID, t time.Time) ([]connectors.SentMessage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	var out []connectors.SentMessage
	for _, m := range l.sent {
		if m.ConversationID == conv && !m.SentAt.After(t) {
			out = append(out, m)
		}
	}
	return out, nil
}

func (l *fakeLedger) ReportLateFailure(_ context.Context, m connectors.SentMessage, f normalize.ReplyError) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.reported == nil {
		l.reported = map[string]bool{}
	}
	if !l.reported[m.ReplyID] {
		l.reported[m.ReplyID] = true
		l.late = append(l.late, lateReport{m: m, failure: f})
	}
	return nil
}

func (l *fakeLedger) lateReports() []lateReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.late)
}

type fakeStore struct{}

func (fakeStore) Get(context.Context, string) ([]byte, error) { return nil, connectors.ErrNotFound }
func (fakeStore) Put(context.Context, string, []byte) error   { return nil }

type fakeConversations struct{}

func (fakeConversations) SetReachable(context.Context, normalize.ConversationID, bool, string) error {
	return nil
}

type fakeMedia struct{}

func (fakeMedia) OpenMedia(context.Context, normalize.MediaID) (io.ReadCloser, connectors.MediaInfo, error) {
	return nil, connectors.MediaInfo{}, connectors.ErrNotFound
}

// healthLog records every reported health change.
type healthLog struct {
	mu     sync.Mutex
	states []normalize.State
}

func (h *healthLog) record(s connectors.Health) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.states = append(h.states, s.State)
}

func (h *healthLog) all() []normalize.State {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.states)
}

// env is a connector with its fakes.
type env struct {
	c       *Connector
	pub     *fakePublisher
	rejects *fakeRejects
	ledger  *fakeLedger
	health  *healthLog
}

// newEnv builds a connector from settings, with fakes for every Deps
// interface.
func newEnv(t *testing.T, settings string) *env {
	t.Helper()
	e := &env{pub: &fakePublisher{}, rejects: &fakeRejects{}, ledger: &fakeLedger{}, health: &healthLog{}}
	deps := connectors.Deps{
		ID:            "fc-eu",
		Platform:      platform,
		Region:        "eu",
		Publisher:     e.pub,
		Rejects:       e.rejects,
		Cursors:       fakeStore{},
		Conversations: fakeConversations{},
		Ledger:        e.ledger,
		Media:         fakeMedia{},
		HTTPClient:    &http.Client{Timeout: 10 * time.Second},
		Now:           func() time.Time { return testNow },
		OnHealth:      e.health.record,
	}
	c, err := New(deps, yamlSettings(settings))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.c = c.(*Connector)
	return e
}

// startSim starts a simulator for the test, with two accounts and no rate
// limit unless opts says otherwise.
func startSim(t *testing.T, opts fakechatsim.Options) *fakechatsim.Server {
	t.Helper()
	if len(opts.Accounts) == 0 {
		opts.Accounts = []fakechatsim.Account{{ID: "1001", Token: "token-1001"}, {ID: "1002", Token: "token-1002"}}
	}
	if opts.Retries == nil {
		opts.Retries = []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond}
	}
	s, err := fakechatsim.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// Customers of the tests.
var (
	maria = fakechatsim.User{ID: "cust_412", Name: "María López", Username: "marialopez", Language: "es"}
	jon   = fakechatsim.User{ID: "cust_77", Name: "Jon Smith", Username: "jsmith", Language: "en"}
)
