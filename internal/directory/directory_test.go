package directory_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

const (
	region    = "eu"
	platform  = "testchat"
	connector = "tc-eu"
	account   = "bot-1"
	window    = 24 * time.Hour
)

// replyWindow is the policy every test event carries.
var replyWindow = kit.Window{Standard: window}

var t0 = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

// counting is the real bucket, counting the reads and writes that go
// through its KeyValue methods (prepared writes are publishes and bypass
// them).
type counting struct {
	jetstream.KeyValue
	gets, writes atomic.Int64
}

func (c *counting) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.gets.Add(1)
	return c.KeyValue.Get(ctx, key)
}

func (c *counting) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	c.writes.Add(1)
	return c.KeyValue.Update(ctx, key, value, rev)
}

func (c *counting) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	c.writes.Add(1)
	return c.KeyValue.Create(ctx, key, value, opts...)
}

type fixture struct {
	bus *bus.Bus
	reg *bus.Region
	kv  *counting
	dir *directory.Store
}

func newFixture(t *testing.T, opts ...directory.Option) *fixture {
	t.Helper()
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	kv := &counting{KeyValue: r.Directory}
	return &fixture{bus: b, reg: r, kv: kv, dir: directory.New(kv, region, opts...)}
}

// event is a customer message in chat at t0+sec seconds.
func event(chat string, sec int) *normalize.Event {
	conv := normalize.NewConversationID(platform, account, chat)
	return &normalize.Event{
		ID:      normalize.NewEventID(platform, account, "msg", chat, time.Duration(sec).String()),
		Source:  normalize.Source(region, platform, connector),
		Type:    normalize.TypeMessageReceived,
		Subject: conv,
		Time:    t0.Add(time.Duration(sec) * time.Second),
		Data: normalize.Data{
			Region: region, Platform: platform, Connector: connector,
			Conversation: &normalize.Conversation{ID: conv, PlatformID: chat, Kind: normalize.KindDirect},
			Message:      &normalize.Message{PlatformID: "m", Text: "hola"},
		},
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// record prepares evs, publishes the writes and settles them; it returns
// the results and what Settle left to RecordInbound.
func (f *fixture) record(t *testing.T, evs ...*normalize.Event) ([]bus.PubResult, []normalize.ConversationID) {
	t.Helper()
	recs := make([]directory.Inbound, len(evs))
	for i, ev := range evs {
		recs[i] = directory.Inbound{Event: ev, Account: account, Window: replyWindow}
	}
	w := f.dir.PrepareInbound(recs)
	w.Load(ctx(t))
	msgs := w.Messages()
	if len(msgs) == 0 {
		return nil, w.Settle(nil)
	}
	res, err := f.bus.Publish(ctx(t), msgs...)
	if err != nil {
		t.Fatalf("publishing the prepared writes: %v", err)
	}
	return res, w.Settle(res)
}

// entry reads id's entry from the bucket, past every cache.
func (f *fixture) entry(t *testing.T, id normalize.ConversationID) (*directory.Entry, uint64) {
	t.Helper()
	e, rev, err := directory.New(f.reg.Directory, region, directory.WithCacheSize(0)).Get(ctx(t), id)
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	return e, rev
}

func TestPrepareInboundCreatesAnUnknownConversationAfterOneRead(t *testing.T) {
	f := newFixture(t)
	ev := event("42", 0)
	res, retry := f.record(t, ev)
	if len(res) != 1 || res[0].Err != nil || len(retry) != 0 {
		t.Fatalf("results %+v, retry %v", res, retry)
	}
	if n := f.kv.gets.Load(); n != 1 {
		t.Errorf("%d reads for an unknown conversation, want 1", n)
	}
	e, rev := f.entry(t, ev.Subject)
	if rev != res[0].Sequence || e.PlatformID != "42" || e.Account != account || !e.Reachable ||
		!e.LastInboundAt.Equal(ev.Time) || e.WindowExpiresAt == nil || !e.WindowExpiresAt.Equal(ev.Time.Add(window)) {
		t.Errorf("entry %+v at revision %d, want the event recorded at %d", e, rev, res[0].Sequence)
	}
}

func TestPrepareInboundOnACachedEntryReadsNothing(t *testing.T) {
	f := newFixture(t)
	f.record(t, event("42", 0))
	gets := f.kv.gets.Load()

	next := event("42", 5)
	res, retry := f.record(t, next)
	if len(res) != 1 || res[0].Err != nil || len(retry) != 0 {
		t.Fatalf("results %+v, retry %v", res, retry)
	}
	if n := f.kv.gets.Load() - gets; n != 0 {
		t.Errorf("%d reads for a cached conversation, want none", n)
	}
	if n := f.kv.writes.Load(); n != 0 {
		t.Errorf("%d writes through KeyValue, want only prepared ones", n)
	}
	e, _ := f.entry(t, next.Subject)
	if !e.LastInboundAt.Equal(next.Time) || !e.WindowExpiresAt.Equal(next.Time.Add(window)) {
		t.Errorf("last inbound %s window %s, want %s", e.LastInboundAt, e.WindowExpiresAt, next.Time)
	}
}

func TestPrepareInboundWritesNothingWhenNothingChanges(t *testing.T) {
	f := newFixture(t)
	newer := event("42", 10)
	f.record(t, newer)
	_, rev := f.entry(t, newer.Subject)

	for name, ev := range map[string]*normalize.Event{
		"a redelivery":                  newer,
		"an older message":              event("42", 3),
		"a message of the same instant": event("42", 10),
	} {
		w := f.dir.PrepareInbound([]directory.Inbound{{Event: ev, Account: account, Window: replyWindow}})
		if n := w.Missing(); n != 0 {
			t.Errorf("%s: %d conversations missing from the cache", name, n)
		}
		if n := len(w.Messages()); n != 0 {
			t.Errorf("%s: %d writes, want none", name, n)
		}
		if retry := w.Settle(nil); len(retry) != 0 {
			t.Errorf("%s: left %v to re-read", name, retry)
		}
	}
	e, after := f.entry(t, newer.Subject)
	if after != rev || !e.LastInboundAt.Equal(newer.Time) {
		t.Errorf("entry at revision %d (was %d), last inbound %s; want it untouched at %s", after, rev, e.LastInboundAt, newer.Time)
	}
}

func TestPrepareInboundWritesEachConversationOnceWithTheNewestTime(t *testing.T) {
	f := newFixture(t)
	a1, b1, a3, a2 := event("1", 1), event("2", 1), event("1", 3), event("1", 2)
	res, retry := f.record(t, a1, b1, a3, a2)
	if len(res) != 2 || len(retry) != 0 {
		t.Fatalf("%d writes (retry %v) for two conversations, want 2", len(res), retry)
	}
	if e, _ := f.entry(t, a1.Subject); !e.LastInboundAt.Equal(a3.Time) {
		t.Errorf("conversation 1 last inbound %s, want the newest %s", e.LastInboundAt, a3.Time)
	}
	if e, _ := f.entry(t, b1.Subject); !e.LastInboundAt.Equal(b1.Time) {
		t.Errorf("conversation 2 last inbound %s, want %s", e.LastInboundAt, b1.Time)
	}
}

func TestPreparedWriteFromAStaleCacheIsRefusedAndRecordInboundKeepsBothWriters(t *testing.T) {
	for _, batch := range []bool{false, true} {
		name := map[bool]string{false: "alone", true: "in a batch"}[batch]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			f.record(t, event("42", 0))

			// Another instance (its own Store and cache) records a newer
			// message that renames the conversation.
			other := directory.New(f.reg.Directory, region)
			theirs := event("42", 20)
			theirs.Data.Conversation.Title = "Maria (VIP)"
			if err := other.RecordInbound(ctx(t), directory.Inbound{Event: theirs, Account: account, Window: replyWindow}); err != nil {
				t.Fatal(err)
			}

			// This instance still caches revision 1 and records an older
			// message that carries a thread.
			ours := event("42", 10)
			ours.Data.Conversation.ThreadID = "t-9"
			w := f.dir.PrepareInbound([]directory.Inbound{{Event: ours, Account: account, Window: replyWindow}})
			msgs := w.Messages()
			if len(msgs) != 1 {
				t.Fatalf("%d prepared writes, want 1", len(msgs))
			}
			if batch {
				evSubject := f.bus.Subjects().Event(region, platform, connector, string(ours.Subject), "message")
				msgs = append(msgs, bus.Message{Subject: evSubject, MsgID: string(ours.ID), Data: []byte(`{}`)})
			}
			res, err := f.bus.Publish(ctx(t), msgs...)
			if err != nil {
				t.Fatalf("a refused conditional write failed the call: %v", err)
			}
			var apiErr *jetstream.APIError
			if !errors.As(res[0].Err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence ||
				!errors.Is(res[0].Err, bus.ErrInvalidMessage) {
				t.Fatalf("write result %+v, want a wrong-last-sequence refusal", res[0])
			}
			if batch && (res[1].Err != nil || res[1].Sequence == 0) {
				t.Errorf("the event beside the refused write: %+v", res[1])
			}
			retry := w.Settle(res[:1])
			if len(retry) != 1 || retry[0] != ours.Subject {
				t.Fatalf("Settle left %v, want %s", retry, ours.Subject)
			}
			if err := f.dir.RecordInbound(ctx(t), directory.Inbound{Event: ours, Account: account, Window: replyWindow}); err != nil {
				t.Fatal(err)
			}

			e, _ := f.entry(t, ours.Subject)
			if e.Title != "Maria (VIP)" || e.ThreadID != "t-9" {
				t.Errorf("title %q thread %q: a writer's field was lost", e.Title, e.ThreadID)
			}
			if !e.LastInboundAt.Equal(theirs.Time) || !e.WindowExpiresAt.Equal(theirs.Time.Add(window)) {
				t.Errorf("last inbound %s window %s, want the newer %s kept", e.LastInboundAt, e.WindowExpiresAt, theirs.Time)
			}

			// The cache now holds the entry as written: the next message
			// needs no read and is not refused.
			gets := f.kv.gets.Load()
			res2, retry2 := f.record(t, event("42", 30))
			if len(res2) != 1 || res2[0].Err != nil || len(retry2) != 0 || f.kv.gets.Load() != gets {
				t.Errorf("after the re-read: results %+v retry %v, %d reads", res2, retry2, f.kv.gets.Load()-gets)
			}
		})
	}
}

func TestSetReachableKeepsTheCacheWritable(t *testing.T) {
	f := newFixture(t)
	ev := event("42", 0)
	f.record(t, ev)
	if err := f.dir.SetReachable(ctx(t), ev.Subject, false, "bot blocked by the user"); err != nil {
		t.Fatal(err)
	}
	gets := f.kv.gets.Load()
	res, retry := f.record(t, event("42", 5))
	if len(res) != 1 || res[0].Err != nil || len(retry) != 0 {
		t.Fatalf("results %+v retry %v: the cache missed SetReachable's write", res, retry)
	}
	if f.kv.gets.Load() != gets {
		t.Errorf("the message after SetReachable read its entry")
	}
	if e, _ := f.entry(t, ev.Subject); !e.Reachable || e.UnreachableWhy != "" {
		t.Errorf("a customer who writes again stays unreachable: %+v", e)
	}
}

func TestUncachedConversationsWithoutALoadAreLeftToRecordInbound(t *testing.T) {
	f := newFixture(t)
	ev := event("42", 0)
	done, cancel := context.WithCancel(t.Context())
	cancel()
	for name, load := range map[string]func(*directory.InboundWrite){
		"not loaded":      func(*directory.InboundWrite) {},
		"failing to load": func(w *directory.InboundWrite) { w.Load(done) },
	} {
		w := f.dir.PrepareInbound([]directory.Inbound{{Event: ev, Account: account, Window: replyWindow}})
		if n := w.Missing(); n != 1 {
			t.Errorf("%s: %d conversations missing, want 1", name, n)
		}
		load(w)
		if len(w.Messages()) != 0 {
			t.Errorf("%s: a write was prepared for an entry that was not read", name)
		}
		if retry := w.Settle(nil); len(retry) != 1 || retry[0] != ev.Subject {
			t.Errorf("%s: Settle left %v, want %s", name, retry, ev.Subject)
		}
	}
	if n := f.kv.writes.Load(); n != 0 {
		t.Errorf("%d writes", n)
	}
}

func TestCacheIsBounded(t *testing.T) {
	f := newFixture(t, directory.WithCacheSize(2))
	for _, chat := range []string{"1", "2", "3"} {
		f.record(t, event(chat, 0))
	}
	gets := f.kv.gets.Load()
	f.record(t, event("3", 1))
	f.record(t, event("2", 1))
	if n := f.kv.gets.Load() - gets; n != 0 {
		t.Errorf("%d reads for the two most recent conversations, want none", n)
	}
	f.record(t, event("1", 1))
	if n := f.kv.gets.Load() - gets; n != 1 {
		t.Errorf("%d reads for the evicted conversation, want 1", n)
	}
}

func TestUncachedStoreStillWritesInOneBatch(t *testing.T) {
	f := newFixture(t, directory.WithCacheSize(0))
	f.record(t, event("42", 0))
	res, retry := f.record(t, event("42", 5))
	if len(res) != 1 || res[0].Err != nil || len(retry) != 0 {
		t.Fatalf("results %+v retry %v", res, retry)
	}
	if n := f.kv.gets.Load(); n != 2 {
		t.Errorf("%d reads without a cache, want one per call", n)
	}
	if e, _ := f.entry(t, event("42", 5).Subject); !e.LastInboundAt.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("last inbound %s", e.LastInboundAt)
	}
}
