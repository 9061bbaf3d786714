package bustest_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/wait"
)

func TestStartGivesAReadyEmbeddedBus(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.SubjectPrefix = "acme" })
	if st := b.Status(); !st.Connected || !st.Embedded {
		t.Fatalf("Status() = %+v", st)
	}
	r := bustest.ProvisionRegion(t, b, "eu")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, bus.Message{Subject: b.Subjects().Event("eu", "slack", "sl", "c_1", "message"), MsgID: "e_1"}); err != nil {
		t.Fatal(err)
	}
	info, err := r.Events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Subjects[0] != "acme.evt.eu.>" || info.State.Msgs != 1 {
		t.Errorf("events stream: subjects %v, %d messages", info.Config.Subjects, info.State.Msgs)
	}
}

func TestStartServerRestartsOnTheSamePortWithTheSameStore(t *testing.T) {
	url, stop, restart := bustest.StartServer(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{URL: url, ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	bustest.ProvisionRegion(t, b, "eu")
	subj := b.Subjects().Event("eu", "slack", "sl", "c_1", "message")
	if _, err := b.Publish(ctx, bus.Message{Subject: subj, MsgID: "e_1"}); err != nil {
		t.Fatal(err)
	}

	stop()
	stop() // idempotent
	wait.For(t, 5*time.Second, "the client to notice the server is down", func() bool { return !b.Status().Connected })
	restart()
	restart() // idempotent
	wait.For(t, 10*time.Second, "the client to reconnect", func() bool { return b.Status().Connected })

	res, err := b.Publish(ctx, bus.Message{Subject: subj, MsgID: "e_1"})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate {
		t.Errorf("re-publish after restart = %+v, want a duplicate: the store must survive", res[0])
	}
}
