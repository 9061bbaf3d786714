package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

var errFlaky = errors.New("connection reset by peer")

func TestRepliesOfEachConversationAreSentInOrderDespiteTransientFailures(t *testing.T) {
	e := newEnv(t)
	const convs, perConv = 5, 10
	rng := rand.New(rand.NewPCG(1, 2))
	var rngMu sync.Mutex
	sender := &fakeSender{script: func(sendCall, int) error {
		rngMu.Lock()
		defer rngMu.Unlock()
		if rng.Float64() < 0.3 {
			return connectors.Transient("503", errFlaky)
		}
		return nil
	}}
	rec := newRecorder()
	e.runOutbox(t, sender, func(o *Options) {
		o.MaxAttempts = 1000
		o.InProcessRetry = 300 * time.Millisecond // some retries in-process, some durable
		o.Observer = rec
	})

	ids := make([]normalize.ConversationID, convs)
	for c := range convs {
		ids[c] = e.conversation(t, fmt.Sprint(1000+c), normalize.KindDirect, time.Now())
	}
	var replyIDs []string
	for r := range perConv {
		for c := range convs {
			id := fmt.Sprintf("rep-c%d-r%02d", c, r)
			replyIDs = append(replyIDs, id)
			e.submit(t, reply(id, ids[c], fmt.Sprintf("c%d-r%02d", c, r)))
		}
	}

	for _, id := range replyIDs {
		ev := e.statuses.wait(t, id, 60*time.Second)
		if ev.Type != normalize.TypeReplySent {
			t.Errorf("reply %s: status %s (%+v), want reply.sent", id, ev.Type, ev.Data.Reply.Error)
		}
	}

	byConv := map[normalize.ConversationID][]string{}
	for _, c := range sender.delivered() {
		byConv[c.Conv] = append(byConv[c.Conv], c.Part)
	}
	for c, conv := range ids {
		var want []string
		for r := range perConv {
			want = append(want, fmt.Sprintf("c%d-r%02d", c, r))
		}
		if got := byConv[conv]; !slices.Equal(got, want) {
			t.Errorf("conversation %d received %v, want %v (in order, once each)", c, got, want)
		}
	}
	for _, id := range replyIDs {
		if n := len(e.statuses.get(id)); n != 1 {
			t.Errorf("reply %s has %d status events, want 1", id, n)
		}
	}
	if rec.retriedCount(connectors.ClassTransient) == 0 {
		t.Error("no retries were observed; the failure script did not bite")
	}
	wait.For(t, 10*time.Second, "the command stream to empty", func() bool { return e.commandsLeft(t) == 0 })
	e.statuses.check(t)
}

func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name           string
		inProcessRetry time.Duration
	}{
		{name: "waits in process when the hint fits the budget", inProcessRetry: 5 * time.Second},
		{name: "naks with the hint as delay when it does not", inProcessRetry: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			const hint = time.Second
			sender := &fakeSender{script: func(_ sendCall, nth int) error {
				if nth == 1 {
					return connectors.RetryAfter(hint, "429", errors.New("too many requests"))
				}
				return nil
			}}
			e.runOutbox(t, sender, func(o *Options) { o.InProcessRetry = tt.inProcessRetry })
			conv := e.conversation(t, "42", normalize.KindDirect, time.Now())
			e.submit(t, reply("r-1", conv, "hello"))

			ev := e.statuses.wait(t, "r-1", 20*time.Second)
			if ev.Type != normalize.TypeReplySent || ev.Data.Reply.Attempts != 2 {
				t.Fatalf("status %s after %d attempts, want reply.sent after 2", ev.Type, ev.Data.Reply.Attempts)
			}
			calls := sender.history()
			if len(calls) != 2 {
				t.Fatalf("%d calls, want 2: %+v", len(calls), calls)
			}
			if gap := calls[1].At.Sub(calls[0].At); gap < hint {
				t.Errorf("retried after %s, want at least the platform's %s", gap, hint)
			}
		})
	}
}

func TestPermanentFailureIsDeadLetteredWithItsCode(t *testing.T) {
	tests := []struct {
		name         string
		err          error
		wantCode     normalize.ErrorCode
		wantPlatform string
	}{
		{name: "blocked recipient", err: connectors.Permanent(normalize.ErrRecipientUnavailable, "403", errors.New("bot was blocked by the user")),
			wantCode: normalize.ErrRecipientUnavailable, wantPlatform: "403"},
		{name: "revoked token", err: connectors.Permanent(normalize.ErrUnauthorized, "401", errors.New("unauthorized")),
			wantCode: normalize.ErrUnauthorized, wantPlatform: "401"},
		{name: "permanent without a code is a platform error", err: connectors.Permanent("", "400", errors.New("bad request")),
			wantCode: normalize.ErrPlatformError, wantPlatform: "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			sender := &fakeSender{script: func(sendCall, int) error { return tt.err }}
			rec := newRecorder()
			e.runOutbox(t, sender, func(o *Options) { o.Observer = rec })
			conv := e.conversation(t, "42", normalize.KindDirect, time.Now())
			r := reply("r-perm", conv, "hello")
			e.submit(t, r)

			ev := e.statuses.wait(t, "r-perm", 20*time.Second)
			if ev.Type != normalize.TypeReplyFailed || ev.Data.Reply.Error == nil {
				t.Fatalf("status %s %+v, want reply.failed with an error", ev.Type, ev.Data.Reply)
			}
			re := ev.Data.Reply.Error
			if re.Code != tt.wantCode || re.PlatformCode != tt.wantPlatform || re.Attempts != 1 {
				t.Errorf("error %+v, want code %s, platform code %s, 1 attempt", re, tt.wantCode, tt.wantPlatform)
			}
			if ev.Data.Conversation == nil || ev.Data.Conversation.PlatformID != "42" {
				t.Errorf("status conversation %+v, want the directory's entry", ev.Data.Conversation)
			}
			if n := len(sender.history()); n != 1 {
				t.Errorf("%d send calls, want 1 (no retry of a permanent failure)", n)
			}

			dls, err := ListDLQ(testContext(t, 5*time.Second), e.b, testRegion)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dls))
			}
			dl := dls[0]
			if dl.ReplyID != "r-perm" || dl.Code != tt.wantCode || dl.PlatformCode != tt.wantPlatform || dl.Attempts != 1 ||
				dl.ConversationID != string(conv) || dl.FailedAt.IsZero() || dl.Message == "" {
				t.Errorf("dead letter %+v", dl)
			}
			if want := e.b.Subjects().Command(testRegion, testPlatform, testConnector, string(conv)); dl.OriginalSubject != want {
				t.Errorf("original subject %q, want %q", dl.OriginalSubject, want)
			}
			if !bytes.Equal(dl.Body, mustJSON(t, r)) {
				t.Errorf("dead letter body %s, want the original command", dl.Body)
			}
			wait.For(t, 5*time.Second, "the command to leave the stream", func() bool { return e.commandsLeft(t) == 0 })
			wait.For(t, 5*time.Second, "the observer", func() bool {
				rec.mu.Lock()
				defer rec.mu.Unlock()
				return rec.failed[tt.wantCode] == 1 && rec.deadLets == 1
			})
		})
	}
}

func TestInvalidCommandsAreDeadLetteredAndTheConsumerGoesOn(t *testing.T) {
	e := newEnv(t)
	sender := &fakeSender{}
	e.runOutbox(t, sender, nil)
	conv := e.conversation(t, "42", normalize.KindDirect, time.Now())
	other := e.conversation(t, "43", normalize.KindDirect, time.Now())

	tests := []struct {
		name    string
		msgID   string
		body    []byte
		replyID string // the id its status carries
	}{
		{name: "no text nor attachments", msgID: "bad-empty",
			body: []byte(`{"id":"bad-empty","conversation_id":"` + string(conv) + `"}`), replyID: "bad-empty"},
		{name: "conversation differs from the subject", msgID: "bad-conv",
			body: mustJSON(t, reply("bad-conv", other, "hi")), replyID: "bad-conv"},
		{name: "not JSON, named by its msg id", msgID: "bad-json",
			body: []byte("this is not json"), replyID: "bad-json"},
		{name: "id unusable, named by its msg id", msgID: "msgid-only",
			body: []byte(`{"id":"has spaces","conversation_id":"` + string(conv) + `","text":"x"}`), replyID: "msgid-only"},
	}
	for _, tt := range tests {
		e.publishRaw(t, conv, tt.msgID, tt.body)
	}
	e.submit(t, reply("good", conv, "still going"))

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := e.statuses.wait(t, tt.replyID, 20*time.Second)
			if ev.Type != normalize.TypeReplyFailed || ev.Data.Reply.Error.Code != normalize.ErrInvalidReply {
				t.Fatalf("status %s %+v, want reply.failed invalid_reply", ev.Type, ev.Data.Reply.Error)
			}
			if ev.Subject != conv {
				t.Errorf("status subject %s, want the command subject's conversation %s", ev.Subject, conv)
			}
		})
	}
	if ev := e.statuses.wait(t, "good", 20*time.Second); ev.Type != normalize.TypeReplySent {
		t.Fatalf("valid reply after invalid ones: %s, want reply.sent", ev.Type)
	}
	if got := sender.deliveredParts(); !slices.Equal(got, []string{"still going"}) {
		t.Errorf("sent %v, want only the valid reply", got)
	}
	dls, err := ListDLQ(testContext(t, 5*time.Second), e.b, testRegion)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != len(tests) {
		t.Errorf("%d dead letters, want %d", len(dls), len(tests))
	}
	for i, dl := range dls {
		if dl.Code != normalize.ErrInvalidReply || !bytes.Equal(dl.Body, tests[i].body) {
			t.Errorf("dead letter %d: code %s body %q", i, dl.Code, dl.Body)
		}
	}
}

func TestExhaustedRetriesAreDeadLettered(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode normalize.ErrorCode
		wantMsg  string
	}{
		{name: "transient failures end as platform_error after MaxAttempts", err: connectors.Transient("502", errors.New("bad gateway")),
			wantCode: normalize.ErrPlatformError, wantMsg: "in 3 deliveries"},
		// Retry-afters are the platform's pacing and cost no attempt: they
		// end only when RateLimitedFor has passed, after more tries than
		// MaxAttempts allows failures.
		{name: "rate limits end as rate_limited after RateLimitedFor", err: connectors.RetryAfter(20*time.Millisecond, "429", errors.New("slow down")),
			wantCode: normalize.ErrRateLimited, wantMsg: "still rate limited 1.5s after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			sender := &fakeSender{script: func(sendCall, int) error { return tt.err }}
			e.runOutbox(t, sender, func(o *Options) {
				o.MaxAttempts = 3
				o.InProcessRetry = 50 * time.Millisecond
				o.RateLimitedFor = 1500 * time.Millisecond
			})
			conv := e.conversation(t, "42", normalize.KindDirect, time.Now())
			e.submit(t, reply("r-x", conv, "hello"))
			ev := e.statuses.wait(t, "r-x", 30*time.Second)
			if ev.Type != normalize.TypeReplyFailed {
				t.Fatalf("status %s, want reply.failed", ev.Type)
			}
			re := ev.Data.Reply.Error
			if re.Code != tt.wantCode || re.Attempts < 3 || ev.Data.Reply.Attempts != re.Attempts ||
				!strings.Contains(re.Message, tt.wantMsg) {
				t.Errorf("error %+v, want %s with %q", re, tt.wantCode, tt.wantMsg)
			}
			if tt.wantCode == normalize.ErrRateLimited {
				m, _, err := getMarker(testContext(t, 5*time.Second), e.reg.Outbox, "r-x")
				if err != nil || m.Deliveries >= 3 {
					t.Errorf("marker %+v (%v): retry-afters were counted as failed deliveries", m, err)
				}
			}
			if n := len(sender.history()); n != re.Attempts {
				t.Errorf("%d send calls, but the status reports %d attempts", n, re.Attempts)
			}
			dls, err := ListDLQ(testContext(t, 5*time.Second), e.b, testRegion)
			if err != nil {
				t.Fatal(err)
			}
			if len(dls) != 1 || dls[0].Code != tt.wantCode || dls[0].Attempts != re.Attempts {
				t.Errorf("dead letters %+v", dls)
			}
		})
	}
}

func TestARestartResumesADurableRetryAndSendsOnce(t *testing.T) {
	e := newEnv(t)
	first := &fakeSender{script: func(sendCall, int) error { return connectors.Transient("503", errFlaky) }}
	_, stopFirst := e.runOutbox(t, first, func(o *Options) {
		o.InProcessRetry = time.Millisecond // straight to NakWithDelay
		o.RetryBase, o.RetryMax = time.Second, time.Second
	})
	conv := e.conversation(t, "42", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-restart", conv, "hello"))

	wait.For(t, 10*time.Second, "the first outbox to hold the conversation", func() bool {
		_, err := e.reg.Outbox.Get(testContext(t, time.Second), holdKey(string(conv)))
		return err == nil
	})
	stopFirst()

	second := &fakeSender{}
	e.runOutbox(t, second, nil)
	ev := e.statuses.wait(t, "r-restart", 20*time.Second)
	if ev.Type != normalize.TypeReplySent || ev.Data.Reply.Attempts != 2 {
		t.Fatalf("status %s with %d attempts, want reply.sent on attempt 2", ev.Type, ev.Data.Reply.Attempts)
	}
	if n := len(first.delivered()); n != 0 {
		t.Errorf("first outbox delivered %d parts, want 0", n)
	}
	if got := second.deliveredParts(); !slices.Equal(got, []string{"hello"}) {
		t.Errorf("second outbox delivered %v, want [hello] once", got)
	}
	wait.For(t, 5*time.Second, "the hold to be cleared", func() bool {
		_, err := e.reg.Outbox.Get(testContext(t, time.Second), holdKey(string(conv)))
		return err != nil
	})
}

func TestACrashAfterSendingNeverSendsAPartTwice(t *testing.T) {
	tests := []struct {
		name      string
		text      string
		crashPart int
	}{
		{name: "single part sent, crash before ack", text: "only", crashPart: 0},
		{name: "first of three parts sent, crash", text: "one|two|three", crashPart: 0},
		{name: "two of three parts sent, crash", text: "one|two|three", crashPart: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			first := &fakeSender{}
			crashed := make(chan struct{})
			o := e.newOutbox(t, first, func(o *Options) { o.AckWait = time.Second })
			o.afterPart = func(_ string, part int) error {
				if part == tt.crashPart {
					close(crashed)
					return errors.New("simulated crash")
				}
				return nil
			}
			stopFirst := e.start(t, o)
			conv := e.conversation(t, "42", normalize.KindDirect, time.Now())
			e.submit(t, reply("r-crash", conv, tt.text))
			select {
			case <-crashed:
			case <-time.After(30 * time.Second):
				t.Fatal("the first outbox never sent")
			}
			stopFirst()

			second := &fakeSender{}
			e.runOutbox(t, second, func(o *Options) { o.AckWait = time.Second })
			ev := e.statuses.wait(t, "r-crash", 20*time.Second)
			if ev.Type != normalize.TypeReplySent {
				t.Fatalf("status %s, want reply.sent", ev.Type)
			}
			all := append(first.delivered(), second.delivered()...)
			var parts []string
			for _, c := range all {
				parts = append(parts, c.Part)
			}
			want := splitParts(tt.text)
			if !slices.Equal(parts, want) {
				t.Errorf("parts delivered %v, want %v once each", parts, want)
			}
			if got := ev.Data.Reply.PlatformIDs; len(got) != len(want) {
				t.Errorf("reply.sent platform ids %v, want %d", got, len(want))
			}
			if n := len(first.delivered()); n != tt.crashPart+1 {
				t.Errorf("first outbox sent %d parts, want %d", n, tt.crashPart+1)
			}
			if got := ev.Data.Reply.PlatformIDs[0]; got != first.delivered()[0].PlatformID {
				t.Errorf("first platform id %s, want the one the first outbox got (%s)", got, first.delivered()[0].PlatformID)
			}
		})
	}
}

func splitParts(text string) []string {
	var out []string
	for _, p := range bytes.Split([]byte(text), []byte("|")) {
		out = append(out, string(p))
	}
	return out
}

func TestAFailedLaterPartDoesNotResendEarlierOnes(t *testing.T) {
	tests := []struct {
		name           string
		inProcessRetry time.Duration
	}{
		{name: "retried in process", inProcessRetry: 5 * time.Second},
		{name: "retried after a durable nak", inProcessRetry: time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			sender := &fakeSender{script: func(c sendCall, nth int) error {
				if c.Part == "two" && nth == 1 {
					return connectors.Transient("500", errFlaky)
				}
				return nil
			}}
			e.runOutbox(t, sender, func(o *Options) { o.InProcessRetry = tt.inProcessRetry })
			conv := e.conversation(t, "42", normalize.KindDirect, time.Now())
			e.submit(t, reply("r-multi", conv, "one|two|three"))
			ev := e.statuses.wait(t, "r-multi", 20*time.Second)
			if ev.Type != normalize.TypeReplySent {
				t.Fatalf("status %s, want reply.sent", ev.Type)
			}
			var calls []string
			for _, c := range sender.history() {
				calls = append(calls, c.Part)
			}
			if want := []string{"one", "two", "two", "three"}; !slices.Equal(calls, want) {
				t.Errorf("calls %v, want %v", calls, want)
			}
			if got := ev.Data.Reply.PlatformIDs; len(got) != 3 {
				t.Errorf("platform ids %v, want 3", got)
			}
		})
	}
}

func TestARateLimitedConversationDoesNotStallOthers(t *testing.T) {
	tests := []struct {
		name           string
		inProcessRetry time.Duration
	}{
		{name: "waiting in process", inProcessRetry: 10 * time.Second},
		{name: "waiting out a nak", inProcessRetry: 100 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			slow := e.conversation(t, "1", normalize.KindDirect, time.Now())
			fast := e.conversation(t, "2", normalize.KindDirect, time.Now())
			limited := make(chan struct{})
			var once sync.Once
			sender := &fakeSender{script: func(c sendCall, nth int) error {
				if c.Part == "slow one" && nth == 1 {
					once.Do(func() { close(limited) })
					return connectors.RetryAfter(2*time.Second, "429", errors.New("too many requests"))
				}
				return nil
			}}
			e.runOutbox(t, sender, func(o *Options) { o.InProcessRetry = tt.inProcessRetry })
			e.submit(t, reply("slow-1", slow, "slow one"))
			e.submit(t, reply("slow-2", slow, "slow two"))
			select {
			case <-limited:
			case <-time.After(10 * time.Second):
				t.Fatal("the slow conversation never tried")
			}
			submitted := time.Now()
			e.submit(t, reply("fast-1", fast, "fast one"))

			e.statuses.wait(t, "fast-1", 10*time.Second)
			e.statuses.wait(t, "slow-2", 20*time.Second)

			byPart := map[string]time.Time{}
			for _, c := range sender.delivered() {
				byPart[c.Part] = c.At
			}
			if d := byPart["fast one"].Sub(submitted); d > time.Second {
				t.Errorf("the other conversation's reply took %s, want it sent while the first waits", d)
			}
			if !byPart["fast one"].Before(byPart["slow one"]) {
				t.Errorf("fast reply at %s, slow at %s: the rate limit stalled the other conversation", byPart["fast one"], byPart["slow one"])
			}
			if !byPart["slow one"].Before(byPart["slow two"]) {
				t.Error("the slow conversation's replies went out of order")
			}
		})
	}
}

func TestRepliesThatCannotGoFailFast(t *testing.T) {
	now := time.Now()
	past := now.Add(-time.Minute)
	tests := []struct {
		name     string
		setup    func(t *testing.T, e *env) *normalize.Reply
		raw      bool                // publish directly, bypassing Submit's checks
		wantCode normalize.ErrorCode // "" means reply.sent
	}{
		{
			name: "window closed",
			setup: func(t *testing.T, e *env) *normalize.Reply {
				return reply("r", e.conversation(t, "1", normalize.KindDirect, now.Add(-48*time.Hour)), "late")
			},
			wantCode: normalize.ErrWindowClosed,
		},
		{
			name: "human agent tag extends the window",
			setup: func(t *testing.T, e *env) *normalize.Reply {
				r := reply("r", e.conversation(t, "1", normalize.KindDirect, now.Add(-48*time.Hour)), "late but tagged")
				r.HumanAgent = true
				return r
			},
		},
		{
			name: "inside the window",
			setup: func(t *testing.T, e *env) *normalize.Reply {
				return reply("r", e.conversation(t, "1", normalize.KindDirect, now.Add(-time.Hour)), "on time")
			},
		},
		{
			name: "recipient unavailable",
			setup: func(t *testing.T, e *env) *normalize.Reply {
				conv := e.conversation(t, "1", normalize.KindDirect, now)
				if err := e.dir.SetReachable(testContext(t, 5*time.Second), conv, false, "bot was blocked by the user"); err != nil {
					t.Fatal(err)
				}
				return reply("r", conv, "hello?")
			},
			wantCode: normalize.ErrRecipientUnavailable,
		},
		{
			name: "not_after passed",
			setup: func(t *testing.T, e *env) *normalize.Reply {
				r := reply("r", e.conversation(t, "1", normalize.KindDirect, now), "too late")
				r.NotAfter = &past
				return r
			},
			wantCode: normalize.ErrExpired,
		},
		{
			name: "unknown conversation",
			setup: func(t *testing.T, e *env) *normalize.Reply {
				return reply("r", normalize.NewConversationID(testPlatform, testAccount, "nobody"), "hello")
			},
			raw:      true,
			wantCode: normalize.ErrUnknownConversation,
		},
		{
			name: "plan refuses the reply",
			setup: func(t *testing.T, e *env) *normalize.Reply {
				return reply("r", e.conversation(t, "1", normalize.KindDirect, now), "unplannable")
			},
			wantCode: normalize.ErrTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			sender := &fakeSender{policy: connectors.Policy{Window: kit.Window{
				Standard: 24 * time.Hour, HumanAgent: 7 * 24 * time.Hour, HumanAgentTag: "HUMAN_AGENT"}}}
			e.runOutbox(t, sender, nil)
			r := tt.setup(t, e)
			if tt.raw {
				e.publishRaw(t, r.ConversationID, r.ID, mustJSON(t, r))
			} else {
				e.submit(t, r)
			}
			ev := e.statuses.wait(t, r.ID, 20*time.Second)
			if tt.wantCode == "" {
				if ev.Type != normalize.TypeReplySent {
					t.Fatalf("status %s %+v, want reply.sent", ev.Type, ev.Data.Reply.Error)
				}
				// The connector's admission reaches its Plan: the tag only
				// past the standard window.
				wantTag := ""
				if r.HumanAgent {
					wantTag = "HUMAN_AGENT"
				}
				if got := sender.admissions(); len(got) != 1 || got[0] != wantTag {
					t.Errorf("Plan was admitted with %q, want %q", got, wantTag)
				}
				return
			}
			if ev.Type != normalize.TypeReplyFailed || ev.Data.Reply.Error.Code != tt.wantCode {
				t.Fatalf("status %s %+v, want reply.failed %s", ev.Type, ev.Data.Reply.Error, tt.wantCode)
			}
			if n := len(sender.history()); n != 0 {
				t.Errorf("%d send calls, want none", n)
			}
		})
	}
}

func TestAConnectorNotRunningHereIsRetriedThenDeadLettered(t *testing.T) {
	e := newEnv(t)
	var looked atomic.Int32
	e.runOutbox(t, &fakeSender{}, func(o *Options) {
		o.MaxAttempts = 3
		o.Lookup = func(string) (Target, bool) { looked.Add(1); return Target{}, false }
	})
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-nowhere", conv, "hello"))
	ev := e.statuses.wait(t, "r-nowhere", 20*time.Second)
	if ev.Type != normalize.TypeReplyFailed || ev.Data.Reply.Error.Code != normalize.ErrPlatformError || ev.Data.Reply.Attempts != 3 {
		t.Fatalf("status %s %+v, want reply.failed platform_error after 3 attempts", ev.Type, ev.Data.Reply)
	}
	if n := looked.Load(); n != 3 {
		t.Errorf("looked the connector up %d times, want 3 (one per delivery)", n)
	}
}

func TestSubmit(t *testing.T) {
	e := newEnv(t)
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	ctx := testContext(t, 10*time.Second)

	res, err := Submit(ctx, e.b, e.dir, reply("dup", conv, "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if want := e.b.Subjects().Command(testRegion, testPlatform, testConnector, string(conv)); res.Subject != want || res.Duplicate {
		t.Errorf("first submit %+v, want subject %s, not duplicate", res, want)
	}

	tests := []struct {
		name  string
		reply *normalize.Reply
		check func(t *testing.T, res SubmitResult, err error)
	}{
		{name: "the same id again is a duplicate", reply: reply("dup", conv, "hello again"),
			check: func(t *testing.T, res SubmitResult, err error) {
				if err != nil || !res.Duplicate {
					t.Errorf("got %+v, %v; want duplicate", res, err)
				}
			}},
		{name: "an unknown conversation is refused", reply: reply("u", normalize.NewConversationID(testPlatform, testAccount, "nobody"), "hi"),
			check: func(t *testing.T, _ SubmitResult, err error) {
				if !errors.Is(err, ErrUnknownConversation) || !errors.Is(err, directory.ErrUnknown) {
					t.Errorf("error %v, want ErrUnknownConversation and directory.ErrUnknown", err)
				}
			}},
		{name: "an invalid reply is refused", reply: reply("", conv, ""),
			check: func(t *testing.T, _ SubmitResult, err error) {
				var ie *normalize.InvalidReplyError
				if !errors.As(err, &ie) {
					t.Errorf("error %v, want *normalize.InvalidReplyError", err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Submit(ctx, e.b, e.dir, tt.reply)
			tt.check(t, res, err)
		})
	}
	if n := e.commandsLeft(t); n != 1 {
		t.Errorf("%d commands stored, want 1", n)
	}
}

func TestDeadLetterListReplayPurge(t *testing.T) {
	e := newEnv(t)
	var broken atomic.Bool
	broken.Store(true)
	sender := &fakeSender{script: func(sendCall, int) error {
		if broken.Load() {
			return connectors.Permanent(normalize.ErrUnauthorized, "401", errors.New("token revoked"))
		}
		return nil
	}}
	e.runOutbox(t, sender, nil)
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("dl-1", conv, "first"))
	e.submit(t, reply("dl-2", conv, "second"))
	e.statuses.wait(t, "dl-1", 20*time.Second)
	e.statuses.wait(t, "dl-2", 20*time.Second)
	ctx := testContext(t, 60*time.Second)

	dls, err := ListDLQ(ctx, e.b, testRegion)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].ReplyID != "dl-1" || dls[1].ReplyID != "dl-2" {
		t.Fatalf("dead letters %+v, want dl-1 and dl-2", dls)
	}

	// Fixed: the replayed reply goes out and ends in reply.sent.
	broken.Store(false)
	if err := Replay(ctx, e.b, testRegion, dls[0].Seq); err != nil {
		t.Fatal(err)
	}
	evs := e.statuses.waitN(t, "dl-1", 2, 20*time.Second)
	if evs[1].Type != normalize.TypeReplySent || evs[1].Data.Reply.Attempts != 1 {
		t.Errorf("replayed reply: %s after %d attempts, want reply.sent on its first attempt", evs[1].Type, evs[1].Data.Reply.Attempts)
	}
	if got := sender.deliveredParts(); !slices.Equal(got, []string{"first"}) {
		t.Errorf("delivered %v, want [first]", got)
	}

	// Broken again: a replay that fails reports a new reply.failed.
	broken.Store(true)
	if err := Replay(ctx, e.b, testRegion, dls[1].Seq); err != nil {
		t.Fatal(err)
	}
	evs = e.statuses.waitN(t, "dl-2", 2, 20*time.Second)
	if evs[1].Type != normalize.TypeReplyFailed || evs[1].ID == evs[0].ID {
		t.Errorf("second failure %s %s, want a new reply.failed", evs[1].Type, evs[1].ID)
	}

	dls, err = ListDLQ(ctx, e.b, testRegion)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].ReplyID != "dl-2" {
		t.Fatalf("dead letters after replays %+v, want dl-2 once", dls)
	}
	if err := Purge(ctx, e.b, testRegion, dls[0].Seq); err != nil {
		t.Fatal(err)
	}
	if dls, err = ListDLQ(ctx, e.b, testRegion); err != nil || len(dls) != 0 {
		t.Fatalf("after purge: %+v, %v; want none", dls, err)
	}
	if err := Purge(ctx, e.b, testRegion, 12345); err == nil {
		t.Error("purging a missing dead letter succeeded")
	}
}

func TestNewRefusesIncompleteOptions(t *testing.T) {
	if _, err := New(Options{Region: testRegion}); err == nil {
		t.Fatal("New without bus, handles, directory and lookup succeeded")
	}
}

func TestTwoInstancesSharingTheConsumerKeepEachConversationInOrder(t *testing.T) {
	e := newEnv(t)
	const convs, perConv = 4, 8
	rng := rand.New(rand.NewPCG(3, 4))
	var rngMu sync.Mutex
	// One sender shared by both instances records the platform's view.
	sender := &fakeSender{delay: 5 * time.Millisecond, script: func(sendCall, int) error {
		rngMu.Lock()
		defer rngMu.Unlock()
		if rng.Float64() < 0.2 {
			return connectors.Transient("503", errFlaky)
		}
		return nil
	}}
	tune := func(o *Options) { o.MaxAttempts = 1000 }
	e.runOutbox(t, sender, tune)
	e.runOutbox(t, sender, tune)

	ids := make([]normalize.ConversationID, convs)
	for c := range convs {
		ids[c] = e.conversation(t, fmt.Sprint(2000+c), normalize.KindDirect, time.Now())
	}
	var replyIDs []string
	for r := range perConv {
		for c := range convs {
			id := fmt.Sprintf("two-c%d-r%02d", c, r)
			replyIDs = append(replyIDs, id)
			e.submit(t, reply(id, ids[c], fmt.Sprintf("c%d-r%02d", c, r)))
		}
	}
	for _, id := range replyIDs {
		if ev := e.statuses.wait(t, id, 60*time.Second); ev.Type != normalize.TypeReplySent {
			t.Errorf("reply %s: %s, want reply.sent", id, ev.Type)
		}
	}
	byConv := map[normalize.ConversationID][]string{}
	for _, c := range sender.delivered() {
		byConv[c.Conv] = append(byConv[c.Conv], c.Part)
	}
	for c, conv := range ids {
		var want []string
		for r := range perConv {
			want = append(want, fmt.Sprintf("c%d-r%02d", c, r))
		}
		if got := byConv[conv]; !slices.Equal(got, want) {
			t.Errorf("conversation %d received %v, want %v", c, got, want)
		}
	}
}

func TestABusyConversationWaitsInTheStreamWithoutStallingOthers(t *testing.T) {
	e := newEnv(t)
	busy := e.conversation(t, "1", normalize.KindDirect, time.Now())
	other := e.conversation(t, "2", normalize.KindDirect, time.Now())
	sender := &fakeSender{script: func(c sendCall, nth int) error {
		if c.Part == "busy-00" && nth == 1 {
			return connectors.RetryAfter(time.Second, "429", errors.New("too many requests"))
		}
		return nil
	}}
	o := e.newOutbox(t, sender, func(o *Options) { o.InProcessRetry = 5 * time.Second })
	o.maxHeld = 3 // the busy conversation's tail stays in the stream
	e.start(t, o)

	const n = 6 // three held, three offered again after the overflow delay
	for i := range n {
		e.submit(t, reply(fmt.Sprintf("busy-%02d", i), busy, fmt.Sprintf("busy-%02d", i)))
	}
	submitted := time.Now()
	e.submit(t, reply("other", other, "other"))
	e.statuses.wait(t, "other", 10*time.Second)
	if d := time.Since(submitted); d > time.Second {
		t.Errorf("the other conversation waited %s behind the busy one", d)
	}
	var want []string
	for i := range n {
		id := fmt.Sprintf("busy-%02d", i)
		want = append(want, id)
		if ev := e.statuses.wait(t, id, 60*time.Second); ev.Type != normalize.TypeReplySent {
			t.Errorf("reply %s: %s, want reply.sent", id, ev.Type)
		}
	}
	var got []string
	for _, c := range sender.delivered() {
		if c.Conv == busy {
			got = append(got, c.Part)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("busy conversation received %v, want %v", got, want)
	}
}

// TestAReusedIDOfAFailedCommandSaysSo: a command whose id an earlier,
// failed command used keeps that outcome (the id is an idempotency key),
// but its status and dead letter say why, instead of repeating the first
// one's reason as if it were its own.
func TestAReusedIDOfAFailedCommandSaysSo(t *testing.T) {
	e := newEnv(t)
	sender := &fakeSender{}
	e.runOutbox(t, sender, nil)
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	other := e.conversation(t, "2", normalize.KindDirect, time.Now())
	// Published on conv's subject, but naming another conversation:
	// invalid, dead-lettered under its id.
	bad := reply("r-x", other, "misrouted")
	e.publishRaw(t, conv, "bad-msg-1", mustJSON(t, bad))
	first := e.statuses.wait(t, "r-x", 20*time.Second)
	if first.Data.Reply.Error == nil || first.Data.Reply.Error.Code != normalize.ErrInvalidReply {
		t.Fatalf("first status %+v, want invalid_reply", first.Data.Reply)
	}

	e.submit(t, reply("r-x", conv, "a good reply, an old id"))
	evs := e.statuses.waitN(t, "r-x", 2, 20*time.Second)
	second := evs[1]
	if second.Type != normalize.TypeReplyFailed || !strings.Contains(second.Data.Reply.Error.Message, "already used") {
		t.Fatalf("second status %s %+v, want reply.failed saying the id was already used", second.Type, second.Data.Reply.Error)
	}
	if n := len(sender.history()); n != 0 {
		t.Errorf("%d sends for a reused id, want none", n)
	}
	dead, err := ListDLQ(testContext(t, 5*time.Second), e.b, testRegion)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 || !strings.Contains(dead[1].Message, "already used") {
		t.Errorf("dead letters %+v, want both commands, the second saying the id was used", dead)
	}
}

// TestLogLinesNameTheRegionOnce: the outbox scopes its logger with the
// region; no record repeats it.
func TestLogLinesNameTheRegionOnce(t *testing.T) {
	e := newEnv(t)
	var buf syncBuffer
	stop := e.start(t, e.newOutbox(t, &fakeSender{}, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}))
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-log", conv, "hello"))
	e.statuses.wait(t, "r-log", 20*time.Second)
	stop()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 3 {
		t.Fatalf("only %d log lines", len(lines))
	}
	for _, l := range lines {
		if n := strings.Count(l, " region="); n != 1 {
			t.Errorf("%d region attributes in %q, want 1", n, l)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// labelObserver records the connector label of every outcome.
type labelObserver struct {
	mu     sync.Mutex
	labels map[string]bool
}

func (l *labelObserver) add(c string)                           { l.mu.Lock(); l.labels[c] = true; l.mu.Unlock() }
func (l *labelObserver) Owned(int)                              {}
func (l *labelObserver) Send(c, _, _ string)                    { l.add(c) }
func (l *labelObserver) Backlog(string, int, time.Duration)     {}
func (l *labelObserver) Sent(c string, _ int, _ time.Duration)  { l.add(c) }
func (l *labelObserver) Failed(c string, _ normalize.ErrorCode) { l.add(c) }
func (l *labelObserver) Retried(c string, _ connectors.Class)   { l.add(c) }
func (l *labelObserver) DeadLettered(c string)                  { l.add(c) }

// TestMetricLabelsNameOnlyConnectorsThatRunHere: command subjects come
// from helpdesks; made-up connector tokens must not each add a series.
func TestMetricLabelsNameOnlyConnectorsThatRunHere(t *testing.T) {
	e := newEnv(t)
	obs := &labelObserver{labels: map[string]bool{}}
	e.runOutbox(t, &fakeSender{}, func(o *Options) { o.Observer = obs; o.MaxAttempts = 1 })
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-ok", conv, "hello"))
	for i := range 20 {
		id := fmt.Sprintf("r-made-up-%d", i)
		_, err := e.b.Publish(testContext(t, 5*time.Second), bus.Message{
			Subject: e.b.Subjects().Command(testRegion, "nowhere", fmt.Sprintf("made-up-%d", i), string(conv)),
			MsgID:   id, Data: mustJSON(t, reply(id, conv, "x")),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.statuses.wait(t, "r-ok", 20*time.Second)
	for i := range 20 {
		e.statuses.wait(t, fmt.Sprintf("r-made-up-%d", i), 20*time.Second)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	for c := range obs.labels {
		if c != testConnector && c != UnknownConnector {
			t.Errorf("metrics label %q: only configured connectors and %s may appear", c, UnknownConnector)
		}
	}
}

// TestAPartClaimedByAnotherInstanceIsNotSentUntilTheClaimLapses: a part's
// marker is claimed by compare-and-set before the send, so while another
// instance's claim is fresh this one does not send it; a claim its holder
// never recorded (it died mid-send) lapses, and the part goes.
func TestAPartClaimedByAnotherInstanceIsNotSentUntilTheClaimLapses(t *testing.T) {
	e := newEnv(t)
	sender := &fakeSender{}
	o := e.newOutbox(t, sender, func(o *Options) {
		o.InstanceID = "me"
		o.Connectors = func() []string { return []string{testConnector} }
	})
	o.claimTTL = 2 * time.Second
	// The claiming instance is alive: a member of the region's outbox.
	presenceJSON := mustJSON(t, presence{Instance: "another-instance"})
	if _, err := e.reg.Leases.Put(testContext(t, 5*time.Second), memberKeyPrefix+"another-instance", presenceJSON); err != nil {
		t.Fatal(err)
	}
	stopPresence := make(chan struct{})
	defer close(stopPresence)
	go func() { // renewed, as a live instance does
		for {
			select {
			case <-stopPresence:
				return
			case <-time.After(time.Second):
				_, _ = e.reg.Leases.Put(context.Background(), memberKeyPrefix+"another-instance", presenceJSON)
			}
		}
	}()
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	claimed := time.Now().UTC()
	b := mustJSON(t, marker{Claim: &claim{Part: 0, Owner: "another-instance", At: claimed}})
	if _, err := e.reg.Outbox.Create(testContext(t, 5*time.Second), markerKey("r-claimed"), b); err != nil {
		t.Fatal(err)
	}
	e.start(t, o)
	e.submit(t, reply("r-claimed", conv, "only once"))
	ev := e.statuses.wait(t, "r-claimed", 20*time.Second)
	if ev.Type != normalize.TypeReplySent {
		t.Fatalf("status %s, want reply.sent once the claim lapsed", ev.Type)
	}
	calls := sender.history()
	if len(calls) != 1 {
		t.Fatalf("%d send calls, want 1", len(calls))
	}
	if held := calls[0].At.Sub(claimed); held < 2*time.Second {
		t.Errorf("sent %s after the other instance's claim, want after its %s lapsed", held, 2*time.Second)
	}
	if ev.Data.Reply.Attempts != 1 {
		t.Errorf("%d attempts, want 1: waiting for another instance's claim is not an attempt", ev.Data.Reply.Attempts)
	}
}

// TestAClaimOfAnInstanceThatLeftLapsesAtOnce: the claim of an instance
// no longer among the region's members (it died; its presence expired
// with its leases) does not hold the part back for the claim's TTL.
func TestAClaimOfAnInstanceThatLeftLapsesAtOnce(t *testing.T) {
	e := newEnv(t)
	sender := &fakeSender{}
	o := e.newOutbox(t, sender, func(o *Options) { o.InstanceID = "me" })
	o.claimTTL = time.Hour
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	b := mustJSON(t, marker{Claim: &claim{Part: 0, Owner: "a-dead-instance", At: time.Now().UTC()}})
	if _, err := e.reg.Outbox.Create(testContext(t, 5*time.Second), markerKey("r-orphan"), b); err != nil {
		t.Fatal(err)
	}
	e.start(t, o)
	e.submit(t, reply("r-orphan", conv, "sent again"))
	if ev := e.statuses.wait(t, "r-orphan", 10*time.Second); ev.Type != normalize.TypeReplySent {
		t.Fatalf("status %s, want reply.sent", ev.Type)
	}
	if n := len(sender.history()); n != 1 {
		t.Errorf("%d send calls, want 1", n)
	}
}

// TestTheClaimIsClearedWhenThePartIsRecorded: after a reply is sent its
// marker holds every part and no claim, so a replay or a late redelivery
// never waits on a claim of its own.
func TestTheClaimIsClearedWhenThePartIsRecorded(t *testing.T) {
	e := newEnv(t)
	e.runOutbox(t, &fakeSender{}, nil)
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-two", conv, "one|two"))
	e.statuses.wait(t, "r-two", 20*time.Second)
	m, _, err := getMarker(testContext(t, 5*time.Second), e.reg.Outbox, "r-two")
	if err != nil {
		t.Fatal(err)
	}
	if !m.Done || len(m.PlatformIDs) != 2 || m.Claim != nil {
		t.Errorf("marker %+v, want both parts recorded and no claim left", m)
	}
}

// TestAnInstanceThatStopsLeavesNoClaimBehind: a part that failed, then a
// stop, must not make the next instance wait out a claim on a part known
// not to be sent.
func TestAnInstanceThatStopsLeavesNoClaimBehind(t *testing.T) {
	e := newEnv(t)
	sender := &fakeSender{script: func(sendCall, int) error {
		return connectors.Transient("503", errors.New("the platform is down"))
	}}
	first := e.newOutbox(t, sender, func(o *Options) { o.InstanceID = "first"; o.InProcessRetry = 5 * time.Second })
	stopFirst := e.start(t, first)
	conv := e.conversation(t, "1", normalize.KindDirect, time.Now())
	e.submit(t, reply("r-stop", conv, "later"))
	wait.For(t, 30*time.Second, "two failed tries", func() bool { return len(sender.history()) >= 2 })
	stopFirst()

	m, _, err := getMarker(testContext(t, 5*time.Second), e.reg.Outbox, "r-stop")
	if err != nil {
		t.Fatal(err)
	}
	if m.Claim != nil {
		t.Fatalf("marker %+v after a stop, want no claim left", m)
	}
	ok := &fakeSender{}
	second := e.newOutbox(t, ok, func(o *Options) { o.InstanceID = "second" })
	second.claimTTL = time.Hour // a leftover claim would block the test
	e.start(t, second)
	ev := e.statuses.wait(t, "r-stop", 20*time.Second)
	if ev.Type != normalize.TypeReplySent {
		t.Errorf("status %s after the takeover, want reply.sent", ev.Type)
	}
}
