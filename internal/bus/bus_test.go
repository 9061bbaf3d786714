package bus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/wait"
)

func boundedCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenEmbeddedWithoutListenerIsInProcessOnly(t *testing.T) {
	b := bustest.Start(t)
	if got := b.ClientURL(); got != "" {
		t.Errorf("ClientURL() = %q, want empty without listener", got)
	}
	st := b.Status()
	if !st.Connected || !st.Embedded || st.State != "connected" || st.URL != "" {
		t.Errorf("Status() = %+v, want connected embedded without URL", st)
	}
	if _, err := b.JS().AccountInfo(boundedCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("jetstream not available: %v", err)
	}
}

func TestOpenEmbeddedWithListenerLetsOtherClientsIn(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.EmbeddedListen = "127.0.0.1:0" })
	url := b.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") || strings.HasSuffix(url, ":0") || strings.HasSuffix(url, ":-1") {
		t.Fatalf("ClientURL() = %q, want nats://127.0.0.1:<port>", url)
	}
	if st := b.Status(); st.URL != url || !st.Embedded {
		t.Errorf("Status() = %+v, want URL %q", st, url)
	}
	bustest.ProvisionRegion(t, b, "eu")
	ctx := boundedCtx(t, 10*time.Second)
	subj := b.Subjects().Event("eu", "telegram", "tg-eu", "c_1", "message")
	if _, err := b.Publish(ctx, bus.Message{Subject: subj, MsgID: "e_1", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("second client: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, bus.StreamName(bus.StreamEvents, "eu"))
	if err != nil {
		t.Fatalf("second client cannot see the events stream: %v", err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		t.Fatalf("second client cannot read the event: %v", err)
	}
	if m.Header.Get(jetstream.MsgIDHeader) != "e_1" {
		t.Errorf("Nats-Msg-Id = %q, want e_1", m.Header.Get(jetstream.MsgIDHeader))
	}
}

func TestOpenEmbeddedKeepsDataAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx := boundedCtx(t, 30*time.Second)
	open := func() *bus.Bus {
		b, err := bus.Open(ctx, bus.Options{DataDir: dir, SyncAlways: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return b
	}
	b := open()
	if _, err := b.Provision(ctx, "eu"); err != nil {
		t.Fatal(err)
	}
	subj := b.Subjects().Event("eu", "slack", "sl", "c_1", "message")
	if _, err := b.Publish(ctx, bus.Message{Subject: subj, MsgID: "e_1"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if st := b.Status(); st.Connected || st.State != "closed" {
		t.Errorf("Status() after Close = %+v, want closed", st)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}

	b = open()
	defer b.Close(ctx)
	r, err := b.Provision(ctx, "eu")
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.Publish(ctx, bus.Message{Subject: subj, MsgID: "e_1"})
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Duplicate {
		t.Errorf("re-publish after restart: %+v, want Duplicate", res[0])
	}
	info, err := r.Events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("events stream holds %d messages after restart, want 1", info.State.Msgs)
	}
}

func TestOpenFailures(t *testing.T) {
	tests := []struct {
		name string
		opts bus.Options
	}{
		{"embedded without data dir", bus.Options{}},
		{"embedded with a bad listen address", bus.Options{DataDir: t.TempDir(), EmbeddedListen: "localhost"}},
		{"certificate without key", bus.Options{URL: "nats://127.0.0.1:1", TLSCertFile: "cert.pem"}},
		{"missing nkey seed file", bus.Options{URL: "nats://127.0.0.1:1", NKeySeedFile: "/nonexistent/seed.nk"}},
		{"bad subject prefix", bus.Options{DataDir: t.TempDir(), SubjectPrefix: "par ley"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bus.Open(boundedCtx(t, 10*time.Second), tc.opts)
			if err == nil {
				b.Close(t.Context())
				t.Fatal("Open succeeded, want an error")
			}
		})
	}
}

func TestOpenExternalWhileServerDownSucceedsAndConnectsLater(t *testing.T) {
	url, stop, restart := bustest.StartServer(t)
	stop()

	ctx := boundedCtx(t, 30*time.Second)
	b, err := bus.Open(ctx, bus.Options{URL: url, Password: "s3cret", User: "u", ReconnectWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open with the server down: %v", err)
	}
	defer b.Close(ctx)
	if st := b.Status(); st.Connected || st.Embedded {
		t.Errorf("Status() = %+v, want not connected", st)
	}
	if got := b.ClientURL(); got != url {
		t.Errorf("ClientURL() = %q, want %q", got, url)
	}
	restart()
	wait.For(t, 10*time.Second, "connection", func() bool { return b.Status().Connected })
	if st := b.Status(); st.State != "connected" || strings.Contains(st.URL, "s3cret") {
		t.Errorf("Status() = %+v", st)
	}
}
