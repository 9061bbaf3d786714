package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// webhookEnv is a webhook-mode connector mounted on an httptest server.
type webhookEnv struct {
	env *connectortest.Env
	sim *telegramsim.Server
	c   *Connector
	url string
}

func newWebhookEnv(t *testing.T) *webhookEnv {
	t.Helper()
	sim := startSim(t)
	env := connectortest.NewEnv(t, inPlatform, "tg-hook")
	c := newTestConnector(t, env, settingsFor(ModeWebhook, sim.URL))
	srv := httptest.NewServer(c.Webhook())
	t.Cleanup(srv.Close)
	return &webhookEnv{env: env, sim: sim, c: c, url: srv.URL}
}

// post sends body as Telegram would, with secret in the secret header.
func (w *webhookEnv) post(t *testing.T, method, secret string, body []byte) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, w.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set(SecretTokenHeader, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// textUpdate is an update as Telegram would POST it.
func textUpdate(t *testing.T, sim *telegramsim.Server, updateID int64, text string) []byte {
	t.Helper()
	u := sim.UserText(testChat, testUser, text)
	u.ID = updateID
	b, err := json.Marshal(&u)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (w *webhookEnv) count(t *testing.T) int {
	t.Helper()
	n, err := w.env.EventCount(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWebhookContract(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		secret     string
		body       func(t *testing.T, w *webhookEnv) []byte
		wantStatus int
		wantEvents int
	}{
		{
			name: "a valid update is stored once and answered 200", method: http.MethodPost, secret: testSecret,
			body:       func(t *testing.T, w *webhookEnv) []byte { return textUpdate(t, w.sim, 10, "hello") },
			wantStatus: http.StatusOK, wantEvents: 1,
		},
		{
			name: "a forged secret is refused with 401 and nothing stored", method: http.MethodPost, secret: "forged",
			body:       func(t *testing.T, w *webhookEnv) []byte { return textUpdate(t, w.sim, 10, "hello") },
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "a missing secret is refused with 401", method: http.MethodPost,
			body:       func(t *testing.T, w *webhookEnv) []byte { return textUpdate(t, w.sim, 10, "hello") },
			wantStatus: http.StatusUnauthorized,
		},
		{
			name: "malformed JSON is refused with 400 and nothing stored", method: http.MethodPost, secret: testSecret,
			body:       func(*testing.T, *webhookEnv) []byte { return []byte(`{"update_id": 5, "message": {`) },
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "an update without update_id is refused with 400", method: http.MethodPost, secret: testSecret,
			body:       func(*testing.T, *webhookEnv) []byte { return []byte(`{"message":{"message_id":1}}`) },
			wantStatus: http.StatusBadRequest,
		},
		{
			name: "an ignored update kind is acknowledged with 200 and nothing stored", method: http.MethodPost, secret: testSecret,
			body:       func(*testing.T, *webhookEnv) []byte { return []byte(`{"update_id": 7, "poll": {"id": "p1"}}`) },
			wantStatus: http.StatusOK,
		},
		{
			// Refusing it would make Telegram redeliver it for ever and hold
			// back every update behind it; it is counted and logged instead.
			name: "a well-formed update the SDK cannot decode is acknowledged and nothing stored", method: http.MethodPost, secret: testSecret,
			body: func(*testing.T, *webhookEnv) []byte {
				return []byte(`{"update_id": 8, "message_reaction": {"chat": {"id": 1, "type": "private"}, "message_id": 3, "date": 1763630000, "new_reaction": [{"type": "brand_new_kind"}]}}`)
			},
			wantStatus: http.StatusOK,
		},
		{
			name: "a structurally broken update is acknowledged and nothing stored", method: http.MethodPost, secret: testSecret,
			body: func(*testing.T, *webhookEnv) []byte {
				return []byte(`{"update_id": 9, "message": {"message_id": 1, "date": 1763630000}}`)
			},
			wantStatus: http.StatusOK,
		},
		{
			name: "a body over the limit is refused with 413", method: http.MethodPost, secret: testSecret,
			body: func(*testing.T, *webhookEnv) []byte {
				return []byte(`{"update_id":1,"message":{"text":"` + strings.Repeat("a", maxUpdateBytes) + `"}}`)
			},
			wantStatus: http.StatusRequestEntityTooLarge,
		},
		{
			name: "GET is refused with 405", method: http.MethodGet, secret: testSecret,
			body:       func(*testing.T, *webhookEnv) []byte { return nil },
			wantStatus: http.StatusMethodNotAllowed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWebhookEnv(t)
			resp, body := w.post(t, tc.method, tc.secret, tc.body(t, w))
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.wantStatus)
			}
			if got := w.count(t); got != tc.wantEvents {
				t.Errorf("stored %d events, want %d", got, tc.wantEvents)
			}
			if tc.wantStatus != http.StatusOK && !strings.Contains(body, `"error"`) {
				t.Errorf("error body %q has no error member", body)
			}
		})
	}
}

func TestWebhookAnswers503WhileEventsCannotBeStoredAndTheRetryStoresOnce(t *testing.T) {
	w := newWebhookEnv(t)
	update := textUpdate(t, w.sim, 11, "are you there?")

	w.env.Publisher.SetDown(true)
	resp, body := w.post(t, http.MethodPost, testSecret, update)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s), want 503", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if h := w.c.Health(); h.State != normalize.StateDegraded {
		t.Errorf("health %s while events cannot be stored, want degraded", h.State)
	}

	w.env.Publisher.SetDown(false)
	for range 2 { // Telegram's retry, and one more for good measure
		if resp, body := w.post(t, http.MethodPost, testSecret, update); resp.StatusCode != http.StatusOK {
			t.Fatalf("retry: status %d (%s), want 200", resp.StatusCode, body)
		}
	}
	if got := w.count(t); got != 1 {
		t.Errorf("stored %d events, want 1", got)
	}
	if got := w.env.Publisher.Duplicates(); got != 1 {
		t.Errorf("JetStream dropped %d duplicates, want 1", got)
	}
	if h := w.c.Health(); h.State == normalize.StateDegraded {
		t.Errorf("health still degraded after a stored update: %+v", h)
	}
}

func TestWebhookAnswersTheCallbackQueryOnlyAfterStoring(t *testing.T) {
	ctx := testContext(t)
	w := newWebhookEnv(t)
	u := w.sim.CallbackQuery(testChat, testUser, 1, "yes")
	// Queued updates are how the simulator learns which query ids it may
	// be asked to answer; nothing polls this queue.
	u.ID = w.sim.Enqueue(u)
	body, err := json.Marshal(&u)
	if err != nil {
		t.Fatal(err)
	}

	w.env.Publisher.SetDown(true)
	if resp, b := w.post(t, http.MethodPost, testSecret, body); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s), want 503", resp.StatusCode, b)
	}
	if n := len(w.sim.CallbackAnswers()); n != 0 {
		t.Fatalf("answered %d callback queries before the event was stored", n)
	}

	w.env.Publisher.SetDown(false)
	if resp, b := w.post(t, http.MethodPost, testSecret, body); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d (%s), want 200", resp.StatusCode, b)
	}
	connectortest.WaitFor(ctx, t, "the callback query is answered", func() bool { return len(w.sim.CallbackAnswers()) == 1 })
	if got := w.sim.CallbackAnswers()[0].QueryID; got != u.CallbackQuery.ID {
		t.Errorf("answered query %q, want %q", got, u.CallbackQuery.ID)
	}
	evs := w.env.WaitEvents(ctx, t, 1)
	if evs[0].Type != normalize.TypePostbackReceived {
		t.Errorf("event type %s, want %s", evs[0].Type, normalize.TypePostbackReceived)
	}
}

func TestWebhookRecordsThatTheBotWasBlocked(t *testing.T) {
	ctx := testContext(t)
	w := newWebhookEnv(t)
	// A message first, so the directory knows the conversation.
	if resp, b := w.post(t, http.MethodPost, testSecret, textUpdate(t, w.sim, 20, "hi")); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d (%s)", resp.StatusCode, b)
	}
	kicked := models.Update{ID: 21, MyChatMember: &models.ChatMemberUpdated{
		Chat: models.Chat{ID: testChat, Type: models.ChatTypePrivate},
		From: testUser,
		Date: int(time.Now().Unix()),
		OldChatMember: models.ChatMember{Type: models.ChatMemberTypeMember,
			Member: &models.ChatMemberMember{User: &models.User{ID: 4242, IsBot: true}}},
		NewChatMember: models.ChatMember{Type: models.ChatMemberTypeBanned,
			Banned: &models.ChatMemberBanned{User: &models.User{ID: 4242, IsBot: true}}},
	}}
	body, err := json.Marshal(&kicked)
	if err != nil {
		t.Fatal(err)
	}
	if resp, b := w.post(t, http.MethodPost, testSecret, body); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d (%s)", resp.StatusCode, b)
	}
	connectortest.WaitFor(ctx, t, "the conversation is recorded as unreachable", func() bool {
		e, _, err := w.env.Directory.Get(context.Background(), testAddress().ConversationID)
		return err == nil && !e.Reachable
	})
}

func TestWebhookStatsCountWhatArrived(t *testing.T) {
	w := newWebhookEnv(t)
	w.post(t, http.MethodPost, testSecret, textUpdate(t, w.sim, 30, "hi"))
	w.post(t, http.MethodPost, testSecret, []byte(`{"update_id": 31, "poll": {"id": "p1"}}`))
	w.post(t, http.MethodPost, testSecret, []byte(`not json`))
	w.post(t, http.MethodPost, "forged", textUpdate(t, w.sim, 32, "hi"))
	want := connectors.InboundStats{Received: 3, Ignored: 1, Failed: 1}
	if got := w.c.InboundStats(); got != want {
		t.Errorf("InboundStats() = %+v, want %+v", got, want)
	}
}

func TestPollingConnectorsWebhookAnswers404(t *testing.T) {
	sim := startSim(t)
	env := connectortest.NewEnv(t, inPlatform, "tg-poll")
	c := newTestConnector(t, env, settingsFor(ModePolling, sim.URL))
	srv := httptest.NewServer(c.Webhook())
	t.Cleanup(srv.Close)
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"update_id":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", resp.StatusCode)
	}
}

func TestWebhookConnectorReportsRunningOnceStorageIsBackWithoutNewTraffic(t *testing.T) {
	w := newWebhookEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitState := func(want normalize.State) {
		t.Helper()
		wait.For(t, 10*time.Second, "health "+string(want), func() bool { return w.c.Health().State == want })
	}
	waitState(normalize.StateRunning)

	w.env.Publisher.SetDown(true)
	if resp, body := w.post(t, http.MethodPost, testSecret, textUpdate(t, w.sim, 12, "anyone?")); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s), want 503", resp.StatusCode, body)
	}
	waitState(normalize.StateDegraded)

	// No update arrives after the outage: the connector must find out by
	// itself, or /readyz would keep the instance out of rotation.
	w.env.Publisher.SetDown(false)
	waitState(normalize.StateRunning)
}
