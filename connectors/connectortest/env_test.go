package connectortest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

func testEvent(id string) *normalize.Event {
	conv := normalize.NewConversationID("test", "acct", "chat-1")
	return &normalize.Event{
		ID:      normalize.NewEventID("test", "acct", id),
		Source:  normalize.Source(Region, "test", "ct-test"),
		Type:    normalize.TypeMessageReceived,
		Subject: conv,
		Time:    time.Unix(1_700_000_000, 0).UTC(),
		Data: normalize.Data{
			Region: Region, Platform: "test", Connector: "ct-test",
			Conversation: &normalize.Conversation{ID: conv, PlatformID: "chat-1", Kind: normalize.KindDirect},
			Message:      &normalize.Message{PlatformID: id, Text: "hello " + id},
			ReceivedAt:   time.Unix(1_700_000_001, 0).UTC(),
		},
	}
}

func TestPublisher(t *testing.T) {
	tests := []struct {
		name  string
		check func(t *testing.T, ctx context.Context, env *Env)
	}{
		{"stores events on their subject and records the conversation", func(t *testing.T, ctx context.Context, env *Env) {
			if err := env.Publisher.Publish(ctx, testEvent("1"), testEvent("2")); err != nil {
				t.Fatal(err)
			}
			evs := env.WaitEvents(ctx, t, 2)
			if len(evs) != 2 || evs[0].ID != testEvent("1").ID || evs[1].ID != testEvent("2").ID {
				t.Fatalf("stored %v", evs)
			}
			if _, _, err := env.Directory.Get(ctx, testEvent("1").Subject); err != nil {
				t.Errorf("directory entry: %v", err)
			}
			if got := env.Publisher.Stored(); got != 2 {
				t.Errorf("Stored() = %d, want 2", got)
			}
		}},
		{"drops a republished event as a duplicate", func(t *testing.T, ctx context.Context, env *Env) {
			for range 2 {
				if err := env.Publisher.Publish(ctx, testEvent("1")); err != nil {
					t.Fatal(err)
				}
			}
			if n, _ := env.EventCount(ctx); n != 1 {
				t.Errorf("stored %d events, want 1", n)
			}
			if got := env.Publisher.Duplicates(); got != 1 {
				t.Errorf("Duplicates() = %d, want 1", got)
			}
		}},
		{"fails with ErrNotDurable while down and stores nothing", func(t *testing.T, ctx context.Context, env *Env) {
			env.Publisher.SetDown(true)
			err := env.Publisher.Publish(ctx, testEvent("1"))
			if !errors.Is(err, connectors.ErrNotDurable) {
				t.Fatalf("Publish while down: %v, want ErrNotDurable", err)
			}
			if n, _ := env.EventCount(ctx); n != 0 {
				t.Errorf("stored %d events while down", n)
			}
			if got := env.Publisher.Calls(); got != 1 {
				t.Errorf("Calls() = %d, want 1", got)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			tc.check(t, ctx, NewEnv(t, "test", "ct-test"))
		})
	}
}

func TestCursors(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	env := NewEnv(t, "test", "ct-test")
	if _, err := env.Cursors.Get(ctx, "telegram.offset"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("Get of an unwritten key: %v, want ErrNotFound", err)
	}
	if err := env.Cursors.Put(ctx, "telegram.offset", []byte("42")); err != nil {
		t.Fatal(err)
	}
	got, err := env.Cursors.Get(ctx, "telegram.offset")
	if err != nil || string(got) != "42" {
		t.Fatalf("Get = %q, %v; want 42", got, err)
	}
	other := &Cursors{kv: env.Region.Cursors, scope: "other"}
	if _, err := other.Get(ctx, "telegram.offset"); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("another connector's scope sees the key: %v", err)
	}
}

func TestHealthLogWaitsForAStateAfterAnIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var h HealthLog
	h.Record(connectors.Health{State: normalize.StateRunning})
	h.Record(connectors.Health{State: normalize.StateDegraded})
	go h.Record(connectors.Health{State: normalize.StateRunning})
	if i := h.Wait(ctx, t, normalize.StateRunning, 1); i != 2 {
		t.Errorf("Wait = %d, want 2", i)
	}
	if s := h.String(); s != "[running → degraded → running]" {
		t.Errorf("String() = %q", s)
	}
}
