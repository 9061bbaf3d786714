package outbox

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/normalize"
)

// TestTelegramSimulatorEndToEnd drives the real Telegram connector against
// the Bot API simulator over HTTP: per-chat pacing, a 429 with
// retry_after, a 500, and a blocked user.
func TestTelegramSimulatorEndToEnd(t *testing.T) {
	const (
		token     = "123456:test-secret"
		botID     = "123456"
		connID    = "tg-eu"
		platform  = "telegram"
		okChats   = 2
		perChat   = 3
		blockedID = int64(303)
	)
	e := newEnv(t)
	sim := telegramsim.New(telegramsim.Options{Token: token})
	srv, err := sim.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	conn, err := telegram.New(connectors.Deps{
		ID: connID, Platform: platform, Region: testRegion,
		Logger:        testLogger(t),
		HTTPClient:    &http.Client{Timeout: 10 * time.Second},
		Conversations: e.dir,
		Now:           time.Now,
	}, connectortest.YAMLSettings(fmt.Sprintf("token: %q\nmode: webhook\nwebhook_secret: s3cret-s3cret\napi_url: %s\n", token, srv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	e.runOutbox(t, conn, func(o *Options) {
		o.Observer = rec
		o.InProcessRetry = 5 * time.Second
		o.Lookup = func(id string) (Target, bool) {
			return Target{Sender: conn, Platform: platform, Limits: telegram.Descriptor.Limits}, id == connID
		}
	})

	tgConversation := func(chat int64) normalize.ConversationID {
		chatStr := strconv.FormatInt(chat, 10)
		id := normalize.NewConversationID(platform, botID, chatStr)
		ev := &normalize.Event{
			ID: normalize.NewEventID(platform, botID, chatStr), Source: normalize.Source(testRegion, platform, connID),
			Type: normalize.TypeMessageReceived, Subject: id, Time: time.Now(),
			Data: normalize.Data{Region: testRegion, Platform: platform, Connector: connID,
				Conversation: &normalize.Conversation{ID: id, PlatformID: chatStr, Kind: normalize.KindDirect},
				Message:      &normalize.Message{Text: "hi"}},
		}
		if err := e.dir.RecordInbound(testContext(t, 5*time.Second), ev, botID, 0); err != nil {
			t.Fatal(err)
		}
		return id
	}

	// One 429 (retry after 1s) and one 500 on the first two sends.
	sim.FailNext("sendMessage", 1, telegramsim.TooManyRequests(1))
	sim.FailNext("sendMessage", 1, telegramsim.InternalServerError())
	sim.Block(blockedID)

	var want []string
	for c := range okChats {
		conv := tgConversation(int64(101 + c))
		for r := range perChat {
			id := fmt.Sprintf("tg-%d-%d", c, r)
			want = append(want, id)
			e.submit(t, reply(id, conv, fmt.Sprintf("chat %d reply %d", c, r)))
		}
	}
	blocked := tgConversation(blockedID)
	e.submit(t, reply("tg-blocked", blocked, "anyone there?"))

	for _, id := range want {
		ev := e.statuses.wait(t, id, 30*time.Second)
		if ev.Type != normalize.TypeReplySent || len(ev.Data.Reply.PlatformIDs) != 1 {
			t.Errorf("reply %s: %s %+v, want reply.sent with one message id", id, ev.Type, ev.Data.Reply)
		}
	}
	ev := e.statuses.wait(t, "tg-blocked", 30*time.Second)
	if ev.Type != normalize.TypeReplyFailed || ev.Data.Reply.Error.Code != normalize.ErrRecipientUnavailable || ev.Data.Reply.Error.PlatformCode != "403" {
		t.Errorf("blocked chat: %s %+v, want reply.failed recipient_unavailable (403)", ev.Type, ev.Data.Reply.Error)
	}

	for c := range okChats {
		chat := int64(101 + c)
		sent := sim.SentTo(chat)
		var texts []string
		for _, s := range sent {
			texts = append(texts, s.Text)
		}
		var wantTexts []string
		for r := range perChat {
			wantTexts = append(wantTexts, fmt.Sprintf("chat %d reply %d", c, r))
		}
		if !slices.Equal(texts, wantTexts) {
			t.Errorf("chat %d received %q, want %q", chat, texts, wantTexts)
		}
	}
	// The connector's limits pace each chat at one message a second; the
	// simulator answers 429 to anything faster. So the only failed calls
	// are the three provoked ones.
	if got, want := sim.Requests("sendMessage"), okChats*perChat+3; got != want {
		t.Errorf("%d sendMessage calls, want %d: pacing let extra calls meet flood control", got, want)
	}
	if n := rec.retriedCount(connectors.ClassRetryAfter); n < 1 {
		t.Errorf("retry-after retries %d, want at least the injected 429", n)
	}
	if n := rec.retriedCount(connectors.ClassTransient); n < 1 {
		t.Errorf("transient retries %d, want at least the injected 500", n)
	}
	entry, _, err := e.dir.Get(testContext(t, 5*time.Second), blocked)
	if err != nil || entry.Reachable {
		t.Errorf("blocked conversation entry %+v, %v: want unreachable", entry, err)
	}
}
