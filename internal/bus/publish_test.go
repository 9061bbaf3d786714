package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/wait"
)

func TestPublishSetsHeadersAndReportsDuplicates(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, "eu")
	ctx := boundedCtx(t, 10*time.Second)
	subj := b.Subjects().Event("eu", "telegram", "tg", "c_1", "message")
	hdr := nats.Header{"Traceparent": []string{"00-abc-def-01"}}
	msg := bus.Message{Subject: subj, MsgID: "e_same", Data: []byte(`{"id":"e_same"}`), Header: hdr}

	first, err := b.Publish(ctx, msg)
	if err != nil {
		t.Fatalf("first Publish: %v", err)
	}
	if len(first) != 1 || first[0].Duplicate || first[0].Stream != "PARLEY_EVT_EU" || first[0].Sequence == 0 {
		t.Fatalf("first Publish = %+v", first)
	}
	second, err := b.Publish(ctx, msg)
	if err != nil {
		t.Fatalf("second Publish: %v", err)
	}
	if !second[0].Duplicate || second[0].Sequence != first[0].Sequence {
		t.Errorf("second Publish of the same msg id = %+v, want Duplicate of sequence %d", second[0], first[0].Sequence)
	}
	// A duplicate inside a batch is reported too.
	batch, err := b.Publish(ctx, msg, bus.Message{Subject: subj, MsgID: "e_other"})
	if err != nil {
		t.Fatal(err)
	}
	if !batch[0].Duplicate || batch[1].Duplicate {
		t.Errorf("batch = %+v, want the first a duplicate", batch)
	}

	sm, err := r.Events.GetMsg(ctx, first[0].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if got := sm.Header.Get(jetstream.MsgIDHeader); got != "e_same" {
		t.Errorf("Nats-Msg-Id = %q", got)
	}
	if got := sm.Header.Get("Content-Type"); got != bus.ContentTypeCloudEvents {
		t.Errorf("Content-Type = %q, want %q", got, bus.ContentTypeCloudEvents)
	}
	if got := sm.Header.Get("Traceparent"); got != "00-abc-def-01" {
		t.Errorf("traceparent = %q", got)
	}
	if len(hdr) != 1 {
		t.Errorf("Publish modified the caller's header: %v", hdr)
	}

	res, err := b.Publish(ctx, bus.Message{Subject: subj, MsgID: "e_ct", Header: nats.Header{"content-type": []string{"application/json"}}})
	if err != nil {
		t.Fatal(err)
	}
	sm, err = r.Events.GetMsg(ctx, res[0].Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if sm.Header.Get("Content-Type") != "" || sm.Header.Get("content-type") != "application/json" {
		t.Errorf("a caller's content type was overridden: %v", sm.Header)
	}
}

func TestPublishBatchReturnsResultsInInputOrder(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, "eu")
	ctx := boundedCtx(t, 20*time.Second)

	msgs := make([]bus.Message, 100)
	for i := range msgs {
		conv := fmt.Sprintf("c_%d", i%7)
		msgs[i] = bus.Message{
			Subject: b.Subjects().Event("eu", "slack", "sl", conv, "message"),
			MsgID:   fmt.Sprintf("e_%03d", i),
			Data:    []byte(fmt.Sprintf(`{"n":%d}`, i)),
		}
	}
	res, err := b.Publish(ctx, msgs...)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(res) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(res), len(msgs))
	}
	for i, pr := range res {
		if pr.Duplicate || pr.Sequence != res[0].Sequence+uint64(i) {
			t.Fatalf("result %d = %+v, want sequence %d", i, pr, res[0].Sequence+uint64(i))
		}
		sm, err := r.Events.GetMsg(ctx, pr.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if sm.Header.Get(jetstream.MsgIDHeader) != msgs[i].MsgID || string(sm.Data) != string(msgs[i].Data) {
			t.Fatalf("sequence %d holds %s %s, want message %d", pr.Sequence, sm.Header.Get(jetstream.MsgIDHeader), sm.Data, i)
		}
	}
}

func TestPublishRejectsInvalidMessages(t *testing.T) {
	b := bustest.Start(t)
	bustest.ProvisionRegion(t, b, "eu")
	subj := b.Subjects().Event("eu", "slack", "sl", "c_1", "message")
	tests := []struct {
		name string
		msgs []bus.Message
	}{
		{"no msg id", []bus.Message{{Subject: subj}}},
		{"no subject", []bus.Message{{MsgID: "e_1"}}},
		{"over max payload", []bus.Message{{Subject: subj, MsgID: "e_big", Data: make([]byte, 2<<20)}}},
		{"over max payload in a batch", []bus.Message{{Subject: subj, MsgID: "e_ok"}, {Subject: subj, MsgID: "e_big", Data: make([]byte, 2<<20)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := b.Publish(boundedCtx(t, 10*time.Second), tc.msgs...)
			if !errors.Is(err, bus.ErrNotDurable) || !errors.Is(err, bus.ErrInvalidMessage) {
				t.Fatalf("Publish = %v, want ErrNotDurable and ErrInvalidMessage", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("an invalid message took %s to fail", d)
			}
		})
	}
}

func TestPublishFailsAsNotDurableWhenTheServerIsDownAndSucceedsAfterRestart(t *testing.T) {
	url, stop, restart := bustest.StartServer(t)
	ctx := boundedCtx(t, 60*time.Second)
	b, err := bus.Open(ctx, bus.Options{URL: url, ReconnectWait: 50 * time.Millisecond, PublishTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	bustest.ProvisionRegion(t, b, "eu")
	subj := b.Subjects().Event("eu", "telegram", "tg", "c_1", "message")
	single := []bus.Message{{Subject: subj, MsgID: "e_outage", Data: []byte("{}")}}
	batch := []bus.Message{
		{Subject: subj, MsgID: "e_outage_1", Data: []byte("{}")},
		{Subject: subj, MsgID: "e_outage_2", Data: []byte("{}")},
		{Subject: subj, MsgID: "e_outage_3", Data: []byte("{}")},
	}

	stop()
	wait.For(t, 5*time.Second, "the client to notice the outage", func() bool { return !b.Status().Connected })

	for _, tc := range []struct {
		name string
		msgs []bus.Message
		ctx  func() context.Context
	}{
		{"single with a short deadline", single, func() context.Context { return boundedCtx(t, 500*time.Millisecond) }},
		{"batch with a short deadline", batch, func() context.Context { return boundedCtx(t, 500*time.Millisecond) }},
		// No deadline of its own: the outage budget (PublishTimeout) ends it.
		{"single without deadline", single, func() context.Context { return ctx }},
		{"batch without deadline", batch, func() context.Context { return ctx }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, err := b.Publish(tc.ctx(), tc.msgs...)
			if !errors.Is(err, bus.ErrNotDurable) {
				t.Fatalf("Publish with the server down = %+v, %v; want ErrNotDurable", res, err)
			}
			if errors.Is(err, bus.ErrInvalidMessage) {
				t.Errorf("an outage reported as an invalid message: %v", err)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Errorf("Publish took %s to give up", d)
			}
			t.Logf("error: %v", err)
		})
	}

	restart()
	wait.For(t, 10*time.Second, "reconnection", func() bool { return b.Status().Connected })
	for _, msgs := range [][]bus.Message{single, batch} {
		res, err := b.Publish(boundedCtx(t, 10*time.Second), msgs...)
		if err != nil {
			t.Fatalf("Publish after restart: %v", err)
		}
		if len(res) != len(msgs) || res[0].Stream != "PARLEY_EVT_EU" {
			t.Errorf("Publish after restart = %+v", res)
		}
	}
}

func TestPublishRidesThroughAShortOutage(t *testing.T) {
	url, stop, restart := bustest.StartServer(t)
	ctx := boundedCtx(t, 60*time.Second)
	b, err := bus.Open(ctx, bus.Options{URL: url, ReconnectWait: 50 * time.Millisecond, PublishTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	r := bustest.ProvisionRegion(t, b, "eu")
	subj := b.Subjects().Event("eu", "telegram", "tg", "c_1", "message")
	msgs := make([]bus.Message, 20)
	for i := range msgs {
		msgs[i] = bus.Message{Subject: subj, MsgID: fmt.Sprintf("e_blip_%d", i), Data: []byte("{}")}
	}

	stop()
	wait.For(t, 5*time.Second, "the client to notice the outage", func() bool { return !b.Status().Connected })
	done := make(chan error, 1)
	go func() {
		_, err := b.Publish(boundedCtx(t, 20*time.Second), msgs...)
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // the outage itself, not a wait for a condition
	restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Publish across a short outage: %v", err)
		}
	case <-time.After(25 * time.Second):
		t.Fatal("Publish did not return")
	}
	info, err := r.Events.Info(boundedCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(msgs)) {
		t.Errorf("stream holds %d messages, want %d: none lost, none twice", info.State.Msgs, len(msgs))
	}
}

func TestPublishOnAClosedBusFailsAtOnce(t *testing.T) {
	b := bustest.Start(t)
	bustest.ProvisionRegion(t, b, "eu")
	if err := b.Close(boundedCtx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := b.Publish(t.Context(), bus.Message{Subject: b.Subjects().Event("eu", "slack", "sl", "c_1", "message"), MsgID: "e_1"})
	if !errors.Is(err, bus.ErrNotDurable) || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Fatalf("Publish on a closed bus = %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
}
