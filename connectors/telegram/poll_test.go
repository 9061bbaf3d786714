package telegram

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/normalize"
)

// pollEnv is a polling connector against the simulator.
type pollEnv struct {
	env *connectortest.Env
	sim *telegramsim.Server
}

func newPollEnv(t *testing.T) *pollEnv {
	t.Helper()
	return &pollEnv{env: connectortest.NewEnv(t, inPlatform, "tg-poll"), sim: startSim(t)}
}

func (p *pollEnv) connector(t *testing.T) *Connector {
	t.Helper()
	return newTestConnector(t, p.env, settingsFor(ModePolling, p.sim.URL))
}

func (p *pollEnv) enqueueTexts(t *testing.T, texts ...string) {
	t.Helper()
	for _, text := range texts {
		if p.sim.Enqueue(p.sim.UserText(testChat, testUser, text)) == 0 {
			t.Fatalf("enqueueing %q failed", text)
		}
	}
}

// savedOffset returns the cursor, or "" when none is saved.
func (p *pollEnv) savedOffset(t *testing.T) string {
	t.Helper()
	b, err := p.env.Cursors.Get(t.Context(), offsetKey)
	if errors.Is(err, connectors.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func texts(evs []*normalize.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Data.Message != nil {
			out = append(out, ev.Data.Message.Text)
		}
	}
	return out
}

func TestPollingSavesTheOffsetOnlyAfterTheBatchIsDurable(t *testing.T) {
	ctx := testContext(t)
	p := newPollEnv(t)
	p.enqueueTexts(t, "m1", "m2")
	stop := runConnector(t, p.connector(t))
	p.env.WaitEvents(ctx, t, 2)
	connectortest.WaitFor(ctx, t, "offset 3 is saved", func() bool { return p.savedOffset(t) == "3" })

	// NATS goes away while the next batch is in hand.
	p.env.Publisher.SetDown(true)
	calls := p.env.Publisher.Calls()
	p.enqueueTexts(t, "m3", "m4")
	connectortest.WaitFor(ctx, t, "the connector retries storing the batch", func() bool {
		return p.env.Publisher.Calls() >= calls+2
	})
	if got := p.savedOffset(t); got != "3" {
		t.Fatalf("offset %q saved while the batch is not durable, want 3", got)
	}
	if got := p.sim.PendingUpdates(); got != 2 {
		t.Fatalf("%d updates unconfirmed at Telegram, want 2", got)
	}
	// The instance dies with the batch in hand.
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Another instance takes over with the same cursor store.
	p.env.Publisher.SetDown(false)
	runConnector(t, p.connector(t))
	evs := p.env.WaitEvents(ctx, t, 4)
	connectortest.WaitFor(ctx, t, "offset 5 is saved", func() bool { return p.savedOffset(t) == "5" })
	if got, want := texts(evs), []string{"m1", "m2", "m3", "m4"}; !slices.Equal(got, want) {
		t.Errorf("stored %q, want every update once, in order: %q", got, want)
	}
	if got := p.sim.PendingUpdates(); got != 0 {
		t.Errorf("%d updates left unconfirmed", got)
	}
}

func TestPollingPublishesABatchWithOneCall(t *testing.T) {
	ctx := testContext(t)
	p := newPollEnv(t)
	p.enqueueTexts(t, "a", "b", "c")
	runConnector(t, p.connector(t))
	p.env.WaitEvents(ctx, t, 3)
	if got := p.env.Publisher.Calls(); got != 1 {
		t.Errorf("Publish called %d times for one batch, want 1", got)
	}
	connectortest.WaitFor(ctx, t, "the simulator holds the allowed updates", func() bool {
		return slices.Equal(p.sim.AllowedUpdates(), defaultAllowedUpdates)
	})
}

func TestPollingSkipsAnUpdateThatCannotBeMapped(t *testing.T) {
	ctx := testContext(t)
	p := newPollEnv(t)
	// A message without a chat: structurally invalid.
	if _, err := p.sim.EnqueueJSON([]byte(`{"message":{"message_id":5,"date":1700000000,"text":"lost"}}`)); err != nil {
		t.Fatal(err)
	}
	p.enqueueTexts(t, "kept")
	c := p.connector(t)
	runConnector(t, c)
	evs := p.env.WaitEvents(ctx, t, 1)
	connectortest.WaitFor(ctx, t, "both updates are confirmed", func() bool { return p.sim.PendingUpdates() == 0 })
	if got := texts(evs); !slices.Equal(got, []string{"kept"}) {
		t.Errorf("stored %q, want only the valid update", got)
	}
	if st := c.InboundStats(); st.Failed != 1 || st.Received != 2 {
		t.Errorf("InboundStats() = %+v, want 2 received, 1 failed", st)
	}
}

func TestPollingAnswersCallbackQueriesAfterStoring(t *testing.T) {
	ctx := testContext(t)
	p := newPollEnv(t)
	u := p.sim.CallbackQuery(testChat, testUser, 1, "yes")
	p.sim.Enqueue(u)
	runConnector(t, p.connector(t))
	evs := p.env.WaitEvents(ctx, t, 1)
	if evs[0].Type != normalize.TypePostbackReceived {
		t.Errorf("event type %s, want %s", evs[0].Type, normalize.TypePostbackReceived)
	}
	connectortest.WaitFor(ctx, t, "the callback query is answered", func() bool { return len(p.sim.CallbackAnswers()) == 1 })
}

func TestPollingRecoversFromPlatformTrouble(t *testing.T) {
	tests := []struct {
		name    string
		failure telegramsim.Failure
		reason  string // in the degraded health's reason
		action  string // the degraded health's action
	}{
		{"another poller on the token degrades, not crashes",
			telegramsim.APIError(409, telegramsim.DescConflictPoller), "another poller", actionOtherPoller},
		{"a 502 HTML page from a proxy degrades",
			telegramsim.BadGatewayHTML(), "502", actionUnreachable},
		{"a 500 degrades",
			telegramsim.InternalServerError(), "500", actionUnreachable},
		{"a dropped connection degrades",
			telegramsim.DropConnection(), "unreachable", actionUnreachable},
		{"flood control degrades until retry_after",
			telegramsim.TooManyRequests(1), "slow down", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			p := newPollEnv(t)
			p.sim.FailNext("getUpdates", 2, tc.failure)
			p.enqueueTexts(t, "after the trouble")
			runConnector(t, p.connector(t))

			down := p.env.Health.Wait(ctx, t, normalize.StateDegraded, 0)
			h := p.env.Health.All()[down]
			if !strings.Contains(h.Reason, tc.reason) || h.Action != tc.action {
				t.Errorf("degraded health %+v, want reason with %q and action %q", h, tc.reason, tc.action)
			}
			if strings.Contains(h.Reason, testToken) {
				t.Errorf("health reason leaks the token: %q", h.Reason)
			}
			p.env.Health.Wait(ctx, t, normalize.StateRunning, down+1)
			p.env.WaitEvents(ctx, t, 1)
		})
	}
}

func TestPollingNeverDeletesAWebhook(t *testing.T) {
	ctx := testContext(t)
	p := newPollEnv(t)
	// Someone registered a webhook for the token.
	setWebhook := newTestConnector(t, p.env, settingsFor(ModeWebhook, p.sim.URL))
	setWebhook.deps.PublicURL = "http://127.0.0.1:9"
	if err := setWebhook.registerWebhook(ctx); err != nil {
		t.Fatal(err)
	}

	c := p.connector(t)
	runConnector(t, c)
	down := p.env.Health.Wait(ctx, t, normalize.StateDegraded, 0)
	if h := p.env.Health.All()[down]; h.Action != actionWebhookIsSet {
		t.Errorf("degraded health %+v, want action %q", h, actionWebhookIsSet)
	}
	if n := p.sim.Requests("deleteWebhook"); n != 0 {
		t.Fatalf("the poller deleted the webhook (%d calls)", n)
	}

	// The operator deletes it; polling resumes.
	if _, err := c.api.DeleteWebhook(ctx, nil); err != nil {
		t.Fatal(err)
	}
	p.env.Health.Wait(ctx, t, normalize.StateRunning, down+1)
}

func TestPollingEndsRunWhenTheTokenIsRefused(t *testing.T) {
	tests := []struct {
		name   string
		status int
	}{
		{"401 Unauthorized", 401},
		{"404 Not Found", 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			p := newPollEnv(t)
			p.sim.FailNext("getUpdates", 1, telegramsim.APIError(tc.status, ""))
			c := p.connector(t)
			err := c.Run(ctx)
			got := connectors.Classify(err)
			if err == nil || got.Class != connectors.ClassPermanent || got.Code != normalize.ErrUnauthorized {
				t.Fatalf("Run = %v, want a permanent unauthorized error", err)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error leaks the token: %v", err)
			}
			if h := c.Health(); h.State != normalize.StateBadCredentials || h.Action != actionBadToken {
				t.Errorf("health %+v, want bad_credentials with action %q", h, actionBadToken)
			}
		})
	}
}

func TestPollingResumesFromTheSavedOffset(t *testing.T) {
	ctx := testContext(t)
	p := newPollEnv(t)
	p.enqueueTexts(t, "old", "new")
	// Update 1 was stored by an earlier run that died before its next poll
	// confirmed it to Telegram.
	if err := p.env.Cursors.Put(ctx, offsetKey, []byte("2")); err != nil {
		t.Fatal(err)
	}
	runConnector(t, p.connector(t))
	evs := p.env.WaitEvents(ctx, t, 1)
	connectortest.WaitFor(ctx, t, "both updates are confirmed", func() bool { return p.sim.PendingUpdates() == 0 })
	if got := texts(evs); !slices.Equal(got, []string{"new"}) {
		t.Errorf("stored %q, want only the update after the offset", got)
	}
}

func TestGetUpdatesErrorsNeverCarryTheToken(t *testing.T) {
	p := newPollEnv(t)
	c := p.connector(t)
	c.pollClient.Transport = failingTransport{}
	_, err := c.getUpdates(t.Context(), 0, true)
	if err == nil {
		t.Fatal("getUpdates through a failing transport succeeded")
	}
	if msg := fmt.Sprint(err); strings.Contains(msg, testToken) || strings.Contains(msg, "TEST-token") {
		t.Errorf("error leaks the token: %s", msg)
	}
}

// failingTransport fails every request as a network would.
type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("connection reset by peer")
}

func TestTwoPollersOnOneTokenDegradeButStoreEveryUpdateOnce(t *testing.T) {
	ctx := testContext(t)
	p := newPollEnv(t)
	first := p.connector(t)
	runConnector(t, first)
	p.env.Health.Wait(ctx, t, normalize.StateRunning, 0)

	// A second deployment starts polling with the same token: Telegram
	// ends the first one's long poll with 409.
	second := p.connector(t)
	runConnector(t, second)
	connectortest.WaitFor(ctx, t, "the first poller reports the other one", func() bool {
		h := first.Health()
		return h.State == normalize.StateDegraded && h.Action == actionOtherPoller
	})

	p.enqueueTexts(t, "u1", "u2", "u3", "u4", "u5")
	connectortest.WaitFor(ctx, t, "every update is confirmed", func() bool { return p.sim.PendingUpdates() == 0 })
	evs := p.env.WaitEvents(ctx, t, 5)
	if got := texts(evs); !slices.Equal(got, []string{"u1", "u2", "u3", "u4", "u5"}) {
		t.Errorf("stored %q, want each update once", got)
	}
}
