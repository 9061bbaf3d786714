package outbox

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// TestFakechatEndToEnd drives a real connector over HTTP against its
// simulator: the connector's policy paces each conversation and budgets
// each account on its own, a 429 with Retry-After and a 503 are retried,
// a blocked customer fails with recipient_unavailable and is recorded
// unreachable by the outbox, and every part sent is in the reply ledger.
func TestFakechatEndToEnd(t *testing.T) {
	const (
		connID   = "fc-eu"
		platform = "fakechat"
		interval = 200 * time.Millisecond
	)
	accounts := []fakechatsim.Account{{ID: "a1", Token: "t1"}, {ID: "a2", Token: "t2"}}
	e := newEnv(t)
	// The simulator allows 5 a second per account; the connector is told
	// 4: a budget kept per connector and account never meets a 429.
	sim, err := fakechatsim.Start(fakechatsim.Options{Accounts: accounts, RateLimit: &simkit.Limit{PerSecond: 5, Burst: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	settings := sim.Settings() + fmt.Sprintf("limits: {per_account: 4, burst: 1, per_conversation: %s}\n", interval)
	conn, err := fakechat.New(connectors.Deps{
		ID: connID, Platform: platform, Region: testRegion,
		Logger: testLogger(t), HTTPClient: &http.Client{Timeout: 10 * time.Second}, Now: time.Now,
	}, connectortest.YAMLSettings(settings))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	e.runOutbox(t, conn, func(o *Options) {
		o.Observer = rec
		o.InProcessRetry = 5 * time.Second
		o.Lookup = func(id string) (Target, bool) { return Target{Sender: conn, Platform: platform}, id == connID }
	})

	conversation := func(account, customer string) normalize.ConversationID {
		sim.AddCustomer(account, customer)
		id := fakechatsim.ConversationID(account, customer)
		ev := &normalize.Event{
			ID: normalize.NewEventID(platform, account, customer), Source: normalize.Source(testRegion, platform, connID),
			Type: normalize.TypeMessageReceived, Subject: id, Time: time.Now(),
			Data: normalize.Data{Region: testRegion, Platform: platform, Connector: connID,
				Conversation: &normalize.Conversation{ID: id, PlatformID: customer, Kind: normalize.KindDirect},
				Message:      &normalize.Message{Text: "hi"}},
		}
		if err := e.dir.RecordInbound(testContext(t, 5*time.Second), directory.Inbound{Event: ev, Account: account}); err != nil {
			t.Fatal(err)
		}
		return id
	}

	sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.RateLimited(time.Second))
	sim.FailNext(fakechatsim.KeySend, 1, fakechatsim.Unavailable())
	const perCustomer = 3
	type chat struct{ account, customer string }
	chats := []chat{{"a1", "u1"}, {"a1", "u2"}, {"a2", "u3"}, {"a2", "u4"}}
	var want []string
	for _, c := range chats {
		conv := conversation(c.account, c.customer)
		for r := range perCustomer {
			id := fmt.Sprintf("fc-%s-%d", c.customer, r)
			want = append(want, id)
			e.submit(t, reply(id, conv, fmt.Sprintf("%s reply %d", c.customer, r)))
		}
	}
	blocked := conversation("a1", "u-blocked")
	sim.Block("u-blocked")
	e.submit(t, reply("fc-blocked", blocked, "anyone there?"))

	ctx := testContext(t, 30*time.Second)
	for _, id := range want {
		ev := e.statuses.wait(t, id, 30*time.Second)
		if ev.Type != normalize.TypeReplySent || len(ev.Data.Reply.PlatformIDs) != 1 {
			t.Fatalf("reply %s: %s %+v, want reply.sent with one message id", id, ev.Type, ev.Data.Reply)
		}
		// The ledger knows the message, as the connector will ask for it:
		// stored in the same pipelined batch as reply.sent, so at most a
		// moment after it is visible.
		var got connectors.SentMessage
		var err error
		ok := wait.Poll(testContext(t, 2*time.Second), func() bool {
			got, err = e.ledger.For(connID, platform).Sent(ctx, ev.Data.Reply.PlatformIDs[0])
			return err == nil
		})
		if !ok || got.ReplyID != id || got.Part != 0 || got.ConversationID != ev.Subject {
			t.Errorf("ledger for %s = %+v, %v", ev.Data.Reply.PlatformIDs[0], got, err)
		}
	}
	ev := e.statuses.wait(t, "fc-blocked", 30*time.Second)
	if ev.Type != normalize.TypeReplyFailed || ev.Data.Reply.Error.Code != normalize.ErrRecipientUnavailable {
		t.Fatalf("blocked customer: %s %+v, want reply.failed recipient_unavailable", ev.Type, ev.Data.Reply.Error)
	}
	entry, _, err := e.dir.Get(ctx, blocked)
	if err != nil || entry.Reachable || entry.UnreachableWhy == "" {
		t.Errorf("blocked conversation entry %+v, %v: want unreachable, with the reason", entry, err)
	}

	for _, c := range chats {
		sent := sim.Sent(c.account, c.customer)
		var texts []string
		for i, s := range sent {
			texts = append(texts, s.Text)
			if i > 0 && s.At.Sub(sent[i-1].At) < interval {
				t.Errorf("%s: two messages %s apart, want at least the policy's %s", c.customer, s.At.Sub(sent[i-1].At), interval)
			}
		}
		var wantTexts []string
		for r := range perCustomer {
			wantTexts = append(wantTexts, fmt.Sprintf("%s reply %d", c.customer, r))
		}
		if !slices.Equal(texts, wantTexts) {
			t.Errorf("%s received %q, want %q (in order, once each)", c.customer, texts, wantTexts)
		}
	}
	// Only the injected failures met the platform's limits: the blocked
	// send, the 429 and the 503 are the only calls beyond one per reply.
	calls := sim.Requests().Count(simkit.Match(http.MethodPost, "/v1/"))
	if want := len(want) + 3; calls != want {
		t.Errorf("%d send calls, want %d: pacing let extra calls meet the rate limit", calls, want)
	}
	if n := rec.retriedCount(connectors.ClassRetryAfter); n < 1 {
		t.Errorf("retry-after retries %d, want at least the injected 429", n)
	}
	if n := rec.retriedCount(connectors.ClassTransient); n < 1 {
		t.Errorf("transient retries %d, want at least the injected 503", n)
	}
}

// TestBudgetsArePerConnectorAndAccount: two accounts of one connector,
// and the same account name on two connectors, never share a bucket.
func TestBudgetsArePerConnectorAndAccount(t *testing.T) {
	e := newEnv(t)
	o := e.newOutbox(t, &fakeSender{}, nil)
	l := connectors.Limits{PerAccount: 10, Burst: 1}
	a := l
	a.Account = "page-1"
	b := l
	b.Account = "page-2"
	if o.limiter("fb", a) == o.limiter("fb", b) {
		t.Error("two accounts of one connector share a bucket")
	}
	if o.limiter("fb", a) == o.limiter("ig", a) {
		t.Error("one account name on two connectors shares a bucket")
	}
	if o.limiter("fb", a) != o.limiter("fb", a) {
		t.Error("one account got two buckets")
	}
	faster := a
	faster.PerAccount = 20
	if lim := o.limiter("fb", faster); float64(lim.Limit()) != 20 {
		t.Errorf("an override of the rate left the bucket at %v", lim.Limit())
	}
	if o.limiter("fb", connectors.Limits{Account: "x"}) != nil {
		t.Error("a zero rate got a bucket, want none (no limit)")
	}
}

// TestAStandbyInstanceHandsRepliesBackWithoutCountingAttempts: sends that
// need a session another instance holds are not tried here, and cost the
// reply nothing.
func TestAStandbyInstanceHandsRepliesBackWithoutCountingAttempts(t *testing.T) {
	e := newEnv(t)
	sender := &fakeSender{}
	var standby atomic.Bool
	standby.Store(true)
	e.runOutbox(t, sender, func(o *Options) {
		o.MaxAttempts = 2
		o.Lookup = func(id string) (Target, bool) {
			return Target{Sender: sender, Platform: testPlatform, Standby: standby.Load()}, id == testConnector
		}
	})
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-standby", conv, "hello"))
	// Several hand-backs, more than MaxAttempts, while standing by.
	wait.For(t, 20*time.Second, "the command is offered several times", func() bool {
		info, err := e.reg.Commands.Info(testContext(t, 5*time.Second))
		if err != nil {
			return false
		}
		ci, err := e.reg.Commands.Consumer(testContext(t, 5*time.Second), PartitionConsumer(testConnector))
		if err != nil {
			return false
		}
		cinfo, err := ci.Info(testContext(t, 5*time.Second))
		return err == nil && info.State.Msgs == 1 && cinfo.NumRedelivered > 0 && cinfo.Delivered.Consumer >= 4
	})
	if n := len(sender.history()); n != 0 {
		t.Fatalf("a standby instance made %d send calls", n)
	}
	if got := e.statuses.get("r-standby"); len(got) != 0 {
		t.Fatalf("a standby instance reported %s", got[0].Type)
	}
	standby.Store(false)
	ev := e.statuses.wait(t, "r-standby", 20*time.Second)
	if ev.Type != normalize.TypeReplySent || ev.Data.Reply.Attempts != 1 {
		t.Errorf("status %s after %d attempts, want reply.sent after 1: standing by costs none", ev.Type, ev.Data.Reply.Attempts)
	}
}
