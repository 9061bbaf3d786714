package kit_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

func TestInboundStore(t *testing.T) {
	unmappable := update("u2")
	unmappable.Err = errors.New("no chat in the update")
	ignored := kit.Update{ID: "u3", Raw: []byte(`{}`), Ignored: "chat_boost"}

	for _, tt := range []struct {
		name      string
		answer    func(context.Context, []*normalize.Event) error
		rejectErr error
		updates   []kit.Update

		wantErr   error // a sentinel Store's error must wrap; nil for success
		wantCalls [][]normalize.EventID
		wantKept  []connectors.Rejected
		wantStats connectors.InboundStats
		wantState normalize.State
	}{
		{
			name:      "the events of every update are stored in one call",
			updates:   []kit.Update{update("u1", "e1", "e2"), update("u2", "e3")},
			wantCalls: [][]normalize.EventID{{"e1", "e2", "e3"}},
			wantStats: connectors.InboundStats{Received: 2},
			wantState: normalize.StateRunning,
		},
		{
			name:      "an unmappable update is dead-lettered and the others stored",
			updates:   []kit.Update{update("u1", "e1"), unmappable, ignored},
			wantCalls: [][]normalize.EventID{{"e1"}},
			wantKept: []connectors.Rejected{
				{Raw: unmappable.Raw, Reason: connectors.RejectUnmappable, Detail: "no chat in the update", UpdateID: "u2"},
			},
			wantStats: connectors.InboundStats{Received: 3, Ignored: 1, Failed: 1, DeadLettered: 1},
			wantState: normalize.StateRunning,
		},
		{
			name:      "a refusal publishes update by update and dead-letters only the refused one",
			answer:    refusing("e2"),
			updates:   []kit.Update{update("u1", "e1"), update("u2", "e2"), update("u3", "e3", "e4")},
			wantCalls: [][]normalize.EventID{{"e1", "e2", "e3", "e4"}, {"e1"}, {"e2"}, {"e3", "e4"}},
			wantKept: []connectors.Rejected{
				{Raw: update("u2").Raw, Reason: connectors.RejectRefused, Detail: errRefused.Error(), UpdateID: "u2"},
			},
			wantStats: connectors.InboundStats{Received: 3, Failed: 1, DeadLettered: 1},
			wantState: normalize.StateRunning, // the server answered: storage works
		},
		{
			name:      "an update that cannot be dead-lettered is not durable",
			rejectErr: errors.New("nats: timeout"),
			updates:   []kit.Update{update("u1", "e1"), unmappable},
			wantErr:   connectors.ErrNotDurable,
			wantCalls: [][]normalize.EventID{{"e1"}},
			wantStats: connectors.InboundStats{Received: 2, Failed: 1},
			wantState: normalize.StateDegraded,
		},
		{
			name:      "a storage outage is not durable and dead-letters nothing",
			answer:    failing(errDown),
			updates:   []kit.Update{update("u1", "e1"), unmappable},
			wantErr:   connectors.ErrNotDurable,
			wantCalls: [][]normalize.EventID{{"e1"}},
			wantStats: connectors.InboundStats{Received: 2, Failed: 1},
			wantState: normalize.StateDegraded,
		},
		{
			name:      "a publish error of no known class is not durable",
			answer:    failing(errors.New("encoding the event")),
			updates:   []kit.Update{update("u1", "e1")},
			wantErr:   connectors.ErrNotDurable,
			wantCalls: [][]normalize.EventID{{"e1"}},
			wantStats: connectors.InboundStats{Received: 1},
			wantState: normalize.StateDegraded,
		},
		{
			name:      "an outage while isolating a refusal is not durable",
			answer:    func(_ context.Context, events []*normalize.Event) error { return refuseAllThenFail(events) },
			updates:   []kit.Update{update("u1", "e1"), update("u2", "e2")},
			wantErr:   connectors.ErrNotDurable,
			wantCalls: [][]normalize.EventID{{"e1", "e2"}, {"e1"}},
			wantStats: connectors.InboundStats{Received: 2},
			wantState: normalize.StateDegraded,
		},
		{
			name:      "updates with nothing to store publish nothing",
			updates:   []kit.Update{ignored},
			wantStats: connectors.InboundStats{Received: 1, Ignored: 1},
			wantState: normalize.StateRunning,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pub := &publisher{answer: tt.answer}
			rej := &rejects{err: tt.rejectErr}
			s := newInbound(t, pub, rej)
			s.health.Started()

			err := s.in.Store(t.Context(), slices.Clone(tt.updates))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Store = %v, want nil: the updates may be acknowledged", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Store = %v, want an error wrapping %v", err, tt.wantErr)
			}
			if got := pub.Calls(); !slices.EqualFunc(got, tt.wantCalls, slices.Equal) {
				t.Errorf("Publish calls = %v, want %v", got, tt.wantCalls)
			}
			if got := rej.Kept(); !slices.EqualFunc(got, tt.wantKept, equalRejected) {
				t.Errorf("dead-lettered = %+v, want %+v", got, tt.wantKept)
			}
			if got := s.in.Stats(); got != tt.wantStats {
				t.Errorf("Stats = %+v, want %+v", got, tt.wantStats)
			}
			if got := s.health.Get().State; got != tt.wantState {
				t.Errorf("health = %s, want %s", got, tt.wantState)
			}
		})
	}
}

// refuseAllThenFail refuses the first call and fails every later one, as
// storage that goes down in the middle of a request.
func refuseAllThenFail(events []*normalize.Event) error {
	if len(events) > 1 {
		return errRefused
	}
	return errDown
}

func equalRejected(a, b connectors.Rejected) bool {
	return string(a.Raw) == string(b.Raw) && a.Reason == b.Reason && a.Detail == b.Detail && a.UpdateID == b.UpdateID
}

func TestInboundStoreKeepsThePublishersError(t *testing.T) {
	cause := errors.New("nats: connection closed")
	s := newInbound(t, &publisher{answer: failing(cause)}, &rejects{})
	err := s.in.Store(t.Context(), []kit.Update{update("u1", "e1")})
	if !errors.Is(err, connectors.ErrNotDurable) || !errors.Is(err, cause) {
		t.Errorf("Store = %v, want an error wrapping both ErrNotDurable and the publisher's error", err)
	}
}

func TestInboundStoreKeepsHealthInStepWithStorage(t *testing.T) {
	pub := &publisher{}
	s := newInbound(t, pub, &rejects{})
	s.health.Started()
	store := func() { _ = s.in.Store(t.Context(), []kit.Update{update("u", "e")}) }

	pub.answer = failing(errDown)
	store()
	if h := s.health.Get(); h.State != normalize.StateDegraded || h.Reason == "" || h.Action == "" {
		t.Errorf("health after an outage = %+v, want degraded with a reason and an action", h)
	}
	pub.answer = nil
	store()
	pub.answer = refusing("e")
	store()
	want := []normalize.State{normalize.StateRunning, normalize.StateDegraded, normalize.StateRunning}
	if got := s.log.States(); !slices.Equal(got, want) {
		t.Errorf("reported states = %v, want %v: a success clears the storage problem and a refusal sets none", got, want)
	}
}

func TestInboundStoreCutShortByItsContextIsNoStorageProblem(t *testing.T) {
	pub := &publisher{answer: func(ctx context.Context, _ []*normalize.Event) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	s := newInbound(t, pub, &rejects{})
	s.health.Started()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.in.Store(ctx, []kit.Update{update("u", "e")}); !errors.Is(err, connectors.ErrNotDurable) {
		t.Errorf("Store = %v, want an error wrapping ErrNotDurable", err)
	}
	if got := s.health.Get().State; got != normalize.StateRunning {
		t.Errorf("health = %s, want running: the request gave up, storage did not fail", got)
	}
}

func TestInboundMalformedCountsAFailedUpdate(t *testing.T) {
	s := newInbound(t, &publisher{}, &rejects{})
	s.in.Malformed()
	if got, want := s.in.Stats(), (connectors.InboundStats{Received: 1, Failed: 1}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}
