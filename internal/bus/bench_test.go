package bus_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
)

// BenchmarkPublish compares Bus.Publish with raw JetStream publishing in the
// same run (embedded in-process server, file storage, no fsync per write,
// 1 KB payloads, msg ids on every message). It decides the single-message
// path: "single/bus-sync" vs "single/bus-async".
func BenchmarkPublish(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 1024)
	setup := func(b *testing.B) (*bus.Bus, string) {
		bb := bustest.Start(b)
		bustest.ProvisionRegion(b, bb, "eu")
		return bb, bb.Subjects().Event("eu", "telegram", "tg-eu", "c_bench", "message")
	}
	rawMsg := func(subj string, n int) *nats.Msg {
		return &nats.Msg{Subject: subj, Data: payload, Header: nats.Header{
			jetstream.MsgIDHeader: []string{"e_" + strconv.Itoa(n)},
			"Content-Type":        []string{bus.ContentTypeCloudEvents},
		}}
	}
	busMsg := func(subj string, n int) bus.Message {
		return bus.Message{Subject: subj, MsgID: "e_" + strconv.Itoa(n), Data: payload}
	}
	perMsg := func(b *testing.B, msgs int) {
		b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
	}
	ctx := context.Background()

	b.Run("single/raw-js-PublishMsg", func(b *testing.B) {
		bb, subj := setup(b)
		n := 0
		for b.Loop() {
			if _, err := bb.JS().PublishMsg(ctx, rawMsg(subj, n)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		perMsg(b, n)
	})
	b.Run("single/bus-sync", func(b *testing.B) {
		bb, subj := setup(b)
		n := 0
		for b.Loop() {
			if _, err := bb.PublishSyncForTest(ctx, busMsg(subj, n)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		perMsg(b, n)
	})
	b.Run("single/bus-async", func(b *testing.B) {
		bb, subj := setup(b)
		n := 0
		for b.Loop() {
			if _, err := bb.PublishAsyncForTest(ctx, busMsg(subj, n)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		perMsg(b, n)
	})
	b.Run("single/bus-Publish", func(b *testing.B) {
		bb, subj := setup(b)
		n := 0
		for b.Loop() {
			if _, err := bb.Publish(ctx, busMsg(subj, n)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		perMsg(b, n)
	})

	const batch = 100
	b.Run("batch100/raw-js-PublishMsgAsync", func(b *testing.B) {
		bb, subj := setup(b)
		js := bb.JS()
		futures := make([]jetstream.PubAckFuture, batch)
		n := 0
		for b.Loop() {
			for i := range futures {
				f, err := js.PublishMsgAsync(rawMsg(subj, n))
				if err != nil {
					b.Fatal(err)
				}
				futures[i] = f
				n++
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
		}
		perMsg(b, n)
	})
	b.Run("batch100/bus-Publish", func(b *testing.B) {
		bb, subj := setup(b)
		msgs := make([]bus.Message, batch)
		n := 0
		for b.Loop() {
			for i := range msgs {
				msgs[i] = busMsg(subj, n)
				n++
			}
			if _, err := bb.Publish(ctx, msgs...); err != nil {
				b.Fatal(err)
			}
		}
		perMsg(b, n)
	})
}
