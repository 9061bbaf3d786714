package outbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

// BenchmarkOutbox delivers b.N replies spread over many conversations
// through a Sender that answers after a fixed delay, beside a baseline that
// only consumes and acks the same commands on the same kind of server, so
// that the ratio holds across machines. Use a fixed count, e.g.
// -benchtime=5000x: setup (directory, pre-published commands) is outside
// the timer but repeated per run.
func BenchmarkOutbox(b *testing.B) {
	cases := []struct {
		convs int
		delay time.Duration
	}{
		{convs: 100, delay: time.Millisecond},
		{convs: 1000, delay: time.Millisecond},
		{convs: 10000, delay: 100 * time.Millisecond},
	}
	for _, c := range cases {
		b.Run(fmt.Sprintf("baseline/convs=%d", c.convs), func(b *testing.B) { benchBaseline(b, c.convs) })
		b.Run(fmt.Sprintf("outbox/convs=%d/send=%s", c.convs, c.delay), func(b *testing.B) { benchOutbox(b, c.convs, c.delay) })
	}
}

type benchEnv struct {
	b     *bus.Bus
	reg   *bus.Region
	dir   *directory.Store
	convs []normalize.ConversationID
}

// newBenchEnv provisions a region, records convs conversations and stores
// n reply commands spread over them round-robin.
func newBenchEnv(b *testing.B, convs, n int, busOpts ...func(*bus.Options)) *benchEnv {
	b.Helper()
	bb := bustest.Start(b, busOpts...)
	reg := bustest.ProvisionRegion(b, bb, testRegion)
	e := &benchEnv{b: bb, reg: reg, dir: directory.New(reg.Directory, testRegion)}
	ctx := testContext(b, 10*time.Minute)
	now := time.Now()
	for c := range convs {
		chat := fmt.Sprint(c)
		id := normalize.NewConversationID(testPlatform, testAccount, chat)
		ev := &normalize.Event{Type: normalize.TypeMessageReceived, Subject: id, Time: now,
			Data: normalize.Data{Region: testRegion, Platform: testPlatform, Connector: testConnector,
				Conversation: &normalize.Conversation{ID: id, PlatformID: chat, Kind: normalize.KindDirect}}}
		if err := e.dir.RecordInbound(ctx, directory.Inbound{Event: ev, Account: testAccount}); err != nil {
			b.Fatal(err)
		}
		e.convs = append(e.convs, id)
	}
	const batch = 1000
	for start := 0; start < n; start += batch {
		var msgs []bus.Message
		for i := start; i < min(start+batch, n); i++ {
			conv := e.convs[i%convs]
			r := reply(fmt.Sprintf("bench-%d", i), conv, fmt.Sprintf("reply %d", i))
			msgs = append(msgs, bus.Message{
				Subject: bb.Subjects().Command(testRegion, testPlatform, testConnector, string(conv)),
				MsgID:   r.ID,
				Data:    mustJSON(b, r),
			})
		}
		if _, err := bb.Publish(ctx, msgs...); err != nil {
			b.Fatal(err)
		}
	}
	return e
}

// benchBaseline consumes and acks the commands, nothing else.
func benchBaseline(b *testing.B, convs int) {
	n := b.N
	e := newBenchEnv(b, convs, n)
	ctx := testContext(b, 10*time.Minute)
	cons, err := e.reg.Commands.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "baseline", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1, MaxAckPending: MaxAckPending,
	})
	if err != nil {
		b.Fatal(err)
	}
	var acked atomic.Int64
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if acked.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(500))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	select {
	case <-done:
	case <-ctx.Done():
		b.Fatalf("baseline acked %d of %d", acked.Load(), n)
	}
	waitEmpty(b, ctx, e.reg.Commands)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "replies/s")
}

// benchOutbox runs the outbox over the commands until every one is sent.
func benchOutbox(b *testing.B, convs int, delay time.Duration) {
	n := b.N
	e := newBenchEnv(b, convs, n)
	sender := &fakeSender{delay: delay}
	rec := newRecorder()
	o, err := New(Options{
		Region: testRegion, Bus: e.b, Handles: e.reg, Directory: e.dir,
		Lookup:   func(string) (Target, bool) { return Target{Sender: sender, Platform: testPlatform}, true },
		Observer: rec,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := testContext(b, 10*time.Minute)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.ResetTimer()
	start := time.Now()
	runDone := make(chan error, 1)
	go func() { runDone <- o.Run(runCtx) }()
	for rec.sentCount() < n {
		select {
		case <-rec.notify:
		case <-ctx.Done():
			b.Fatalf("outbox sent %d of %d", rec.sentCount(), n)
		}
	}
	waitEmpty(b, ctx, e.reg.Commands)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "replies/s")
	cancel()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	if got := len(sender.delivered()); got != n {
		b.Fatalf("sender got %d parts, want %d", got, n)
	}
}

// waitEmpty waits until the stream holds no message.
func waitEmpty(b *testing.B, ctx context.Context, s jetstream.Stream) {
	b.Helper()
	for {
		info, err := s.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("%d commands left", info.State.Msgs)
		case <-time.After(time.Millisecond):
		}
	}
}
