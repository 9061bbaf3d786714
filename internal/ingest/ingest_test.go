package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/ingest"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/normalize"
)

const (
	region    = "eu"
	platform  = "testchat"
	connector = "tc-eu"
	account   = "bot-1"
)

// message builds a message.received event from a chat and a message id.
func message(chat, msgID string, attachments ...normalize.Attachment) *normalize.Event {
	conv := normalize.NewConversationID(platform, account, chat)
	return &normalize.Event{
		ID:      normalize.NewEventID(platform, account, "msg", chat, msgID),
		Source:  normalize.Source(region, platform, connector),
		Type:    normalize.TypeMessageReceived,
		Subject: conv,
		Time:    time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC),
		Data: normalize.Data{
			Region: region, Platform: platform, Connector: connector,
			Conversation: &normalize.Conversation{ID: conv, PlatformID: chat, Kind: normalize.KindDirect},
			Sender:       &normalize.Sender{ID: normalize.NewSenderID(platform, account, chat), PlatformID: chat, Name: "Maria"},
			Message:      &normalize.Message{PlatformID: msgID, Text: "hola", Attachments: attachments},
			ReceivedAt:   time.Date(2026, 11, 20, 9, 30, 1, 0, time.UTC),
		},
	}
}

func photo(fileID string) normalize.Attachment {
	return normalize.Attachment{
		Kind: normalize.AttachImage, MediaID: normalize.NewMediaID(platform, account, fileID),
		MimeType: "image/jpeg", Size: 1234, Status: normalize.MediaPending, FetchRef: fileID,
	}
}

// streamMsgs returns every message stored in a stream, in order.
func streamMsgs(t *testing.T, s jetstream.Stream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading message %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type fixture struct {
	bus *bus.Bus
	reg *bus.Region
	dir *directory.Store
	met *metrics.Metrics
	pub *ingest.Publisher
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	f := &fixture{bus: b, reg: r, dir: directory.New(r.Directory, region), met: metrics.New()}
	f.pub = ingest.New(ingest.Options{
		Bus: b, Region: region, Platform: platform, Connector: connector, Account: account,
		Directory: f.dir, Policy: dayWindow, Metrics: f.met,
	})
	return f
}

func TestPublish(t *testing.T) {
	tests := []struct {
		name   string
		events func() []*normalize.Event
		check  func(t *testing.T, f *fixture, events []*normalize.Event)
	}{
		{
			name:   "a text message is stored on its conversation subject",
			events: func() []*normalize.Event { return []*normalize.Event{message("42", "1")} },
			check: func(t *testing.T, f *fixture, evs []*normalize.Event) {
				msgs := streamMsgs(t, f.reg.Events)
				if len(msgs) != 1 {
					t.Fatalf("events stream holds %d messages, want 1", len(msgs))
				}
				want := "parley.evt.eu.testchat.tc-eu." + string(evs[0].Subject) + ".message"
				if msgs[0].Subject != want {
					t.Errorf("subject %q, want %q", msgs[0].Subject, want)
				}
				if got := msgs[0].Header.Get("Nats-Msg-Id"); got != string(evs[0].ID) {
					t.Errorf("Nats-Msg-Id %q, want the event id %q", got, evs[0].ID)
				}
				if got := msgs[0].Header.Get("Content-Type"); got != normalize.ContentType {
					t.Errorf("Content-Type %q", got)
				}
				ev, err := normalize.Decode(msgs[0].Data)
				if err != nil {
					t.Fatalf("stored event does not decode: %v", err)
				}
				if ev.Data.Message.Text != "hola" {
					t.Errorf("stored text %q", ev.Data.Message.Text)
				}
				if n := len(streamMsgs(t, f.reg.MediaJobs)); n != 0 {
					t.Errorf("%d media jobs for a text message", n)
				}
			},
		},
		{
			name: "each attachment gets one media job after the events",
			events: func() []*normalize.Event {
				return []*normalize.Event{message("42", "2", photo("f1"), photo("f2"))}
			},
			check: func(t *testing.T, f *fixture, evs []*normalize.Event) {
				jobs := streamMsgs(t, f.reg.MediaJobs)
				if len(jobs) != 2 {
					t.Fatalf("media stream holds %d jobs, want 2", len(jobs))
				}
				for i, m := range jobs {
					var j media.Job
					if err := json.Unmarshal(m.Data, &j); err != nil {
						t.Fatalf("job %d: %v", i, err)
					}
					att := evs[0].Data.Message.Attachments[i]
					if j.MediaID != att.MediaID || j.FetchRef != att.FetchRef || j.AttachmentIndex != i {
						t.Errorf("job %d = %+v, want media %s ref %s", i, j, att.MediaID, att.FetchRef)
					}
					if j.EventID != evs[0].ID || j.MessageID != "2" || j.ConversationID != evs[0].Subject {
						t.Errorf("job %d does not name its message: %+v", i, j)
					}
					if j.Conversation == nil || j.Sender == nil || j.Sender.Name != "Maria" {
						t.Errorf("job %d lacks conversation or sender", i)
					}
					if j.Unavailable != "" {
						t.Errorf("job %d flagged unavailable: %q", i, j.Unavailable)
					}
					if got, want := m.Header.Get("Nats-Msg-Id"), media.JobMsgID(evs[0].ID, i); got != want {
						t.Errorf("job %d msg id %q, want %q", i, got, want)
					}
					if want := "parley.media.eu.testchat.tc-eu." + string(evs[0].Subject); m.Subject != want {
						t.Errorf("job %d subject %q, want %q", i, m.Subject, want)
					}
				}
				stored := streamMsgs(t, f.reg.Events)
				ev, err := normalize.Decode(stored[0].Data)
				if err != nil {
					t.Fatal(err)
				}
				raw := string(stored[0].Data)
				if strings.Contains(raw, "f1") {
					t.Errorf("the fetch ref leaked into the published event: %s", raw)
				}
				if ev.Data.Message.Attachments[0].Status != normalize.MediaPending {
					t.Errorf("attachment status %q, want pending", ev.Data.Message.Attachments[0].Status)
				}
			},
		},
		{
			name: "an unavailable attachment is queued to fail at once with its reason",
			events: func() []*normalize.Event {
				a := photo("big")
				a.Status, a.UnavailableReason = normalize.MediaUnavailable, "over the 20 MB download limit"
				return []*normalize.Event{message("42", "3", a)}
			},
			check: func(t *testing.T, f *fixture, _ []*normalize.Event) {
				jobs := streamMsgs(t, f.reg.MediaJobs)
				if len(jobs) != 1 {
					t.Fatalf("%d jobs, want 1", len(jobs))
				}
				var j media.Job
				if err := json.Unmarshal(jobs[0].Data, &j); err != nil {
					t.Fatal(err)
				}
				if j.Unavailable != "over the 20 MB download limit" {
					t.Errorf("job unavailable reason %q", j.Unavailable)
				}
			},
		},
		{
			name: "the directory records the conversation and its reply window",
			events: func() []*normalize.Event {
				return []*normalize.Event{message("42", "4"), message("77", "5")}
			},
			check: func(t *testing.T, f *fixture, evs []*normalize.Event) {
				for _, ev := range evs {
					e, _, err := f.dir.Get(t.Context(), ev.Subject)
					if err != nil {
						t.Fatalf("directory entry of %s: %v", ev.Subject, err)
					}
					if e.Account != account || e.Connector != connector || e.PlatformID != ev.Data.Conversation.PlatformID {
						t.Errorf("entry %+v", e)
					}
					if e.WindowExpiresAt == nil || !e.WindowExpiresAt.Equal(ev.Time.Add(24*time.Hour)) {
						t.Errorf("window expires at %v, want %v", e.WindowExpiresAt, ev.Time.Add(24*time.Hour))
					}
				}
			},
		},
		{
			name: "a redelivered event is dropped and counted as duplicate",
			events: func() []*normalize.Event {
				return []*normalize.Event{message("42", "6"), message("42", "6")}
			},
			check: func(t *testing.T, f *fixture, _ []*normalize.Event) {
				if n := len(streamMsgs(t, f.reg.Events)); n != 1 {
					t.Errorf("events stream holds %d messages, want 1", n)
				}
				body := scrape(t, f.met)
				for _, w := range []string{
					`parley_events_published_total{connector="tc-eu",platform="testchat",region="eu",type="parley.message.received"} 1`,
					`parley_events_duplicate_total{connector="tc-eu",platform="testchat",region="eu",type="parley.message.received"} 1`,
				} {
					if !strings.Contains(body, w) {
						t.Errorf("metrics lack %s", w)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			evs := tt.events()
			// Each event in its own call, as a platform redelivery would.
			for _, ev := range evs {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				err := f.pub.Publish(ctx, ev)
				cancel()
				if err != nil {
					t.Fatalf("Publish: %v", err)
				}
			}
			tt.check(t, f, evs)
		})
	}
}

func TestPublishBatchIsOneCall(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	evs := []*normalize.Event{message("1", "1", photo("a")), message("2", "2"), message("3", "3", photo("b"))}
	if err := f.pub.Publish(ctx, evs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if n := len(streamMsgs(t, f.reg.Events)); n != 3 {
		t.Errorf("%d events stored, want 3", n)
	}
	if n := len(streamMsgs(t, f.reg.MediaJobs)); n != 2 {
		t.Errorf("%d media jobs stored, want 2", n)
	}
}

func TestPublishRejectsMalformedEventsWithoutNotDurable(t *testing.T) {
	f := newFixture(t)
	good := message("42", "1")
	bad := message("42", "2")
	bad.ID = "not-an-id"
	err := f.pub.Publish(t.Context(), good, bad)
	if err == nil {
		t.Fatal("Publish accepted a malformed event")
	}
	if errors.Is(err, connectors.ErrNotDurable) || !errors.Is(err, connectors.ErrRefused) {
		t.Errorf("a malformed event is a bug, not an outage: want ErrRefused and not ErrNotDurable, got %v", err)
	}
	if n := len(streamMsgs(t, f.reg.Events)); n != 0 {
		t.Errorf("%d events stored from a batch with a malformed event, want none", n)
	}
}

func TestPublishWhileNATSIsDownIsNotDurable(t *testing.T) {
	url, stop, restart := bustest.StartServer(t)
	b := bustest.Start(t, func(o *bus.Options) {
		o.URL = url
		o.PublishTimeout = 300 * time.Millisecond
		o.ReconnectWait = 50 * time.Millisecond
	})
	r := bustest.ProvisionRegion(t, b, region)
	met := metrics.New()
	pub := ingest.New(ingest.Options{
		Bus: b, Region: region, Platform: platform, Connector: connector, Account: account,
		Directory: directory.New(r.Directory, region), Metrics: met,
	})
	ev := message("42", "1", photo("p"))

	stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := pub.Publish(ctx, ev)
	if !errors.Is(err, connectors.ErrNotDurable) {
		t.Fatalf("Publish with NATS down = %v, want connectors.ErrNotDurable", err)
	}
	if !errors.Is(err, bus.ErrNotDurable) {
		t.Errorf("error %v lost bus.ErrNotDurable from its chain", err)
	}
	if !strings.Contains(scrape(t, met), `parley_publish_failures_total{connector="tc-eu",region="eu"} 1`) {
		t.Error("publish failure not counted")
	}

	restart()
	// The platform retries until NATS is back; bounded by ctx.
	for {
		err = pub.Publish(ctx, ev)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Publish never succeeded after restart: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := len(streamMsgs(t, r.Events)); n != 1 {
		t.Errorf("%d events stored after the retry, want exactly 1", n)
	}
	if n := len(streamMsgs(t, r.MediaJobs)); n != 1 {
		t.Errorf("%d media jobs stored after the retry, want exactly 1", n)
	}
}

func TestPublishState(t *testing.T) {
	f := newFixture(t)
	since := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	h := connectors.Health{State: normalize.StateDegraded, Reason: "platform unreachable", Action: "", Since: since}
	for range 2 { // the repeat is a duplicate
		if err := f.pub.PublishState(t.Context(), h); err != nil {
			t.Fatalf("PublishState: %v", err)
		}
	}
	h.Reason = "platform answers 502"
	if err := f.pub.PublishState(t.Context(), h); err != nil {
		t.Fatalf("PublishState: %v", err)
	}
	msgs := streamMsgs(t, f.reg.Events)
	if len(msgs) != 2 {
		t.Fatalf("%d state events stored, want 2 (one per distinct health)", len(msgs))
	}
	if want := "parley.evt.eu.testchat.tc-eu._.connector"; msgs[0].Subject != want {
		t.Errorf("subject %q, want %q", msgs[0].Subject, want)
	}
	ev, err := normalize.Decode(msgs[1].Data)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != normalize.TypeConnectorState || ev.Data.State.State != normalize.StateDegraded ||
		ev.Data.State.Reason != "platform answers 502" || !ev.Time.Equal(since) {
		t.Errorf("state event %+v %+v", ev, ev.Data.State)
	}
}

func TestCursors(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	a := ingest.NewCursors(r.Cursors, "tg-a")
	other := ingest.NewCursors(r.Cursors, "tg-b")
	ctx := t.Context()

	if _, err := a.Get(ctx, "offset"); !errors.Is(err, connectors.ErrNotFound) {
		t.Fatalf("Get of an unwritten key = %v, want ErrNotFound", err)
	}
	// Keys that are not valid KV keys as such are escaped.
	for _, key := range []string{"offset", "poll:offset with spaces", "a.b"} {
		if err := a.Put(ctx, key, []byte("v-"+key)); err != nil {
			t.Fatalf("Put %q: %v", key, err)
		}
		got, err := a.Get(ctx, key)
		if err != nil || string(got) != "v-"+key {
			t.Errorf("Get %q = %q, %v", key, got, err)
		}
	}
	if _, err := other.Get(ctx, "offset"); !errors.Is(err, connectors.ErrNotFound) {
		t.Errorf("another connector sees tg-a's cursor: %v", err)
	}
}

func TestConversationsSetReachable(t *testing.T) {
	f := newFixture(t)
	ev := message("42", "1")
	if err := f.pub.Publish(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	c := ingest.NewConversations(f.dir)
	if err := c.SetReachable(t.Context(), ev.Subject, false, "bot blocked by the user"); err != nil {
		t.Fatalf("SetReachable: %v", err)
	}
	e, _, err := f.dir.Get(t.Context(), ev.Subject)
	if err != nil {
		t.Fatal(err)
	}
	if e.Reachable || e.UnreachableWhy != "bot blocked by the user" {
		t.Errorf("entry reachable=%v why=%q", e.Reachable, e.UnreachableWhy)
	}
	// An unknown conversation is left alone, not an error.
	if err := c.SetReachable(t.Context(), normalize.NewConversationID(platform, account, "nobody"), false, "x"); err != nil {
		t.Errorf("SetReachable of an unknown conversation: %v", err)
	}
}

// countingKV is the real directory bucket, counting the reads and writes
// made through its KeyValue methods. The prepared directory writes are
// plain publishes in Publish's batch and do not go through them.
type countingKV struct {
	jetstream.KeyValue
	gets, writes atomic.Int64
}

func (c *countingKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	c.gets.Add(1)
	return c.KeyValue.Get(ctx, key)
}

func (c *countingKV) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	c.writes.Add(1)
	return c.KeyValue.Update(ctx, key, value, rev)
}

func (c *countingKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	c.writes.Add(1)
	return c.KeyValue.Create(ctx, key, value, opts...)
}

// countingFixture is a fixture whose directory counts its reads and writes.
func countingFixture(t *testing.T) (*fixture, *countingKV) {
	t.Helper()
	f := newFixture(t)
	kv := &countingKV{KeyValue: f.reg.Directory}
	f.dir = directory.New(kv, region)
	f.pub = ingest.New(ingest.Options{
		Bus: f.bus, Region: region, Platform: platform, Connector: connector, Account: account,
		Directory: f.dir, Policy: dayWindow, Metrics: f.met,
	})
	return f, kv
}

// later is message(chat, msgID) sent sec seconds after message's time.
func later(chat, msgID string, sec int) *normalize.Event {
	ev := message(chat, msgID)
	ev.Time = ev.Time.Add(time.Duration(sec) * time.Second)
	return ev
}

// freshEntry reads a conversation's entry from the bucket, past any cache.
func freshEntry(t *testing.T, f *fixture, id normalize.ConversationID) (*directory.Entry, uint64) {
	t.Helper()
	e, rev, err := directory.New(f.reg.Directory, region, directory.WithCacheSize(0)).Get(t.Context(), id)
	if err != nil {
		t.Fatalf("directory entry of %s: %v", id, err)
	}
	return e, rev
}

func publishOK(t *testing.T, p *ingest.Publisher, evs ...*normalize.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Publish(ctx, evs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func TestPublishWritesACachedConversationInTheEventsBatch(t *testing.T) {
	f, kv := countingFixture(t)
	publishOK(t, f.pub, message("42", "1"))
	if n := kv.gets.Load(); n != 1 {
		t.Errorf("%d directory reads for a new conversation, want 1", n)
	}
	gets, writes := kv.gets.Load(), kv.writes.Load()

	next := later("42", "2", 30)
	publishOK(t, f.pub, next)
	if n := kv.gets.Load() - gets; n != 0 {
		t.Errorf("%d directory reads for a cached conversation, want none", n)
	}
	if n := kv.writes.Load() - writes; n != 0 {
		t.Errorf("%d directory writes after the batch, want none", n)
	}
	// Recorded once Publish returned.
	e, rev := freshEntry(t, f, next.Subject)
	if !e.LastInboundAt.Equal(next.Time) || e.WindowExpiresAt == nil || !e.WindowExpiresAt.Equal(next.Time.Add(24*time.Hour)) {
		t.Errorf("last inbound %s window %v, want %s", e.LastInboundAt, e.WindowExpiresAt, next.Time)
	}
	if e.Account != account || e.PlatformID != "42" || e.Connector != connector {
		t.Errorf("entry %+v lost its address", e)
	}
	// The revision is the batch's conditional publish, not a KV call.
	st, err := f.bus.JS().Stream(t.Context(), "KV_"+f.reg.Directory.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetMsg(t.Context(), rev)
	if err != nil {
		t.Fatal(err)
	}
	if id := raw.Header.Get(jetstream.MsgIDHeader); !strings.HasPrefix(id, "dir:") ||
		raw.Header.Get(jetstream.ExpectedLastSubjSeqHeader) == "" {
		t.Errorf("directory revision %d has headers %v, want a prepared conditional write", rev, raw.Header)
	}
	if n := len(streamMsgs(t, f.reg.Events)); n != 2 {
		t.Errorf("%d events stored, want 2", n)
	}
}

func TestPublishFallsBackWhenAnotherInstanceMovedTheEntryOn(t *testing.T) {
	f, kv := countingFixture(t)
	first := message("42", "1")
	publishOK(t, f.pub, first)

	// Another instance, with its own directory cache, records a newer
	// message that renames the conversation.
	otherDir := directory.New(f.reg.Directory, region)
	other := ingest.New(ingest.Options{
		Bus: f.bus, Region: region, Platform: platform, Connector: connector, Account: account,
		Directory: otherDir, Policy: dayWindow,
	})
	theirs := later("42", "3", 60)
	theirs.Data.Conversation.Title = "Maria (VIP)"
	publishOK(t, other, theirs)

	// This instance still caches the first revision and records an older
	// message that carries a thread: its batched write is refused, and
	// Publish re-reads before it returns.
	gets := kv.gets.Load()
	ours := later("42", "2", 30)
	ours.Data.Conversation.ThreadID = "t-9"
	publishOK(t, f.pub, ours)
	if n := kv.gets.Load() - gets; n != 1 {
		t.Errorf("%d directory reads after the refusal, want 1", n)
	}

	e, _ := freshEntry(t, f, first.Subject)
	if e.Title != "Maria (VIP)" || e.ThreadID != "t-9" {
		t.Errorf("title %q thread %q: a writer's field was lost", e.Title, e.ThreadID)
	}
	if !e.LastInboundAt.Equal(theirs.Time) || !e.WindowExpiresAt.Equal(theirs.Time.Add(24*time.Hour)) {
		t.Errorf("last inbound %s window %s, want the newer %s kept", e.LastInboundAt, e.WindowExpiresAt, theirs.Time)
	}
	if n := len(streamMsgs(t, f.reg.Events)); n != 3 {
		t.Errorf("%d events stored, want 3", n)
	}

	// Re-read, the cache is current again: the next message needs no read.
	gets = kv.gets.Load()
	publishOK(t, f.pub, later("42", "4", 90))
	if n := kv.gets.Load() - gets; n != 0 {
		t.Errorf("%d directory reads after the cache was refreshed, want none", n)
	}
}

func TestPublishNeverMovesLastInboundAtBack(t *testing.T) {
	f, kv := countingFixture(t)
	newer, older := later("42", "2", 60), later("42", "1", 0)
	publishOK(t, f.pub, newer)
	_, rev := freshEntry(t, f, newer.Subject)
	gets, writes := kv.gets.Load(), kv.writes.Load()

	publishOK(t, f.pub, older)
	e, after := freshEntry(t, f, newer.Subject)
	if !e.LastInboundAt.Equal(newer.Time) || !e.WindowExpiresAt.Equal(newer.Time.Add(24*time.Hour)) {
		t.Errorf("last inbound %s window %s after an older message, want %s", e.LastInboundAt, e.WindowExpiresAt, newer.Time)
	}
	if after != rev || kv.gets.Load() != gets || kv.writes.Load() != writes {
		t.Errorf("an older message touched the directory: revision %d → %d", rev, after)
	}
	if n := len(streamMsgs(t, f.reg.Events)); n != 2 {
		t.Errorf("%d events stored, want both", n)
	}

	// Both in one call, newest first: one write, the newest time.
	a, b := later("77", "2", 60), later("77", "1", 0)
	publishOK(t, f.pub, a, b)
	if e, _ := freshEntry(t, f, a.Subject); !e.LastInboundAt.Equal(a.Time) {
		t.Errorf("last inbound %s after a batch, want the newest %s", e.LastInboundAt, a.Time)
	}
}

func TestPublishOfAnEventTheServerRefusesIsRefusedNotAnOutage(t *testing.T) {
	f, _ := countingFixture(t)
	publishOK(t, f.pub, message("42", "1"))

	big := later("42", "2", 30)
	big.Data.Message.Text = strings.Repeat("x", 2<<20) // over the server's max payload
	err := f.pub.Publish(t.Context(), big)
	if !errors.Is(err, connectors.ErrRefused) || errors.Is(err, connectors.ErrNotDurable) || !errors.Is(err, bus.ErrInvalidMessage) {
		t.Fatalf("Publish of an event NATS refuses = %v, want ErrRefused (not ErrNotDurable) with ErrInvalidMessage", err)
	}
	if n := len(streamMsgs(t, f.reg.Events)); n != 1 {
		t.Errorf("%d events stored, want only the first", n)
	}

	// Whatever became of the batched directory write, the next message is
	// recorded right.
	next := later("42", "3", 60)
	publishOK(t, f.pub, next)
	if e, _ := freshEntry(t, f, next.Subject); !e.LastInboundAt.Equal(next.Time) {
		t.Errorf("last inbound %s, want %s", e.LastInboundAt, next.Time)
	}
}

func TestConcurrentPublishersOnTwoInstancesKeepTheNewestMessage(t *testing.T) {
	f := newFixture(t)
	pubs := make([]*ingest.Publisher, 2)
	for i := range pubs {
		pubs[i] = ingest.New(ingest.Options{
			Bus: f.bus, Region: region, Platform: platform, Connector: connector, Account: account,
			Directory: directory.New(f.reg.Directory, region), Policy: dayWindow,
		})
	}
	const n = 40
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		// Times interleave so that older messages often land after newer ones.
		sec := (i * 7) % n
		ev := later("42", strconv.Itoa(i), sec)
		wg.Go(func() { errs <- pubs[i%2].Publish(ctx, ev) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	want := message("42", "x").Time.Add((n - 1) * time.Second)
	e, _ := freshEntry(t, f, message("42", "x").Subject)
	if !e.LastInboundAt.Equal(want) || !e.WindowExpiresAt.Equal(want.Add(24*time.Hour)) {
		t.Errorf("last inbound %s window %s, want the newest %s", e.LastInboundAt, e.WindowExpiresAt, want)
	}
	if got := len(streamMsgs(t, f.reg.Events)); got != n {
		t.Errorf("%d events stored, want %d", got, n)
	}
}

// dayWindow is a connector policy with a 24-hour reply window.
func dayWindow(connectors.Address) connectors.Policy {
	return connectors.Policy{Window: kit.Window{Standard: 24 * time.Hour}}
}

// TestEventsCarryTheWindowTheDirectoryRecords: window_expires_at comes from
// the connector's policy, on every event of the conversation — a receipt
// too — and agrees with the directory entry the outbox reads.
func TestEventsCarryTheWindowTheDirectoryRecords(t *testing.T) {
	f := newFixture(t)
	msg := message("42", "1")
	publishOK(t, f.pub, msg)
	receipt := later("42", "r1", 30)
	receipt.Type = normalize.TypeReceiptRead
	receipt.Data.Message = nil
	receipt.Data.Receipt = &normalize.Receipt{PlatformIDs: []string{"9"}}
	publishOK(t, f.pub, receipt)

	want := msg.Time.Add(24 * time.Hour)
	msgs := streamMsgs(t, f.reg.Events)
	if len(msgs) != 2 {
		t.Fatalf("%d events stored, want 2", len(msgs))
	}
	for _, m := range msgs {
		ev, err := normalize.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Data.WindowExpiresAt == nil || !ev.Data.WindowExpiresAt.Equal(want) {
			t.Errorf("%s carries window_expires_at %v, want %s", ev.Type, ev.Data.WindowExpiresAt, want)
		}
	}
	e, _ := freshEntry(t, f, msg.Subject)
	if e.WindowExpiresAt == nil || !e.WindowExpiresAt.Equal(want) {
		t.Errorf("the directory records %v, want %s", e.WindowExpiresAt, want)
	}
}

func TestRejectsKeepPoisonUpdatesOnceAndBounded(t *testing.T) {
	f := newFixture(t)
	rj := ingest.NewRejects(f.bus, region, platform, connector, f.met)
	raw := []byte(strings.Repeat("y", 200<<10))
	for range 2 { // a redelivery of the same update is kept once
		if err := rj.Reject(t.Context(), connectors.Rejected{Raw: raw, Reason: connectors.RejectRefused,
			Detail: "too large\nfor the server", UpdateID: "77"}); err != nil {
			t.Fatal(err)
		}
	}
	msgs := streamMsgs(t, f.reg.DLQ)
	if len(msgs) != 1 {
		t.Fatalf("%d dead letters, want 1", len(msgs))
	}
	m := msgs[0]
	if want := f.bus.Subjects().InboundDLQ(region, platform, connector); m.Subject != want {
		t.Errorf("subject %q, want %q", m.Subject, want)
	}
	h := m.Header
	if h.Get(ingest.HeaderRejectReason) != connectors.RejectRefused || h.Get(ingest.HeaderRejectUpdate) != "77" ||
		h.Get(ingest.HeaderRejectSize) != strconv.Itoa(len(raw)) || h.Get(ingest.HeaderRejectDetail) != "too large for the server" {
		t.Errorf("headers %v", h)
	}
	if len(m.Data) >= len(raw) || h.Get(ingest.HeaderRejectTruncated) != "true" || !bytes.HasPrefix(raw, m.Data) {
		t.Errorf("kept %d of %d bytes (truncated %q), want a bounded prefix", len(m.Data), len(raw), h.Get(ingest.HeaderRejectTruncated))
	}
	if got := f.met.Total("parley_inbound_dead_lettered_total"); got != 1 {
		t.Errorf("parley_inbound_dead_lettered_total = %v, want 1: the repeat was not kept again", got)
	}
}
