package telegram

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/normalize"
)

const (
	testToken  = "4242:TEST-token_x"
	testBotID  = "4242"
	testSecret = "hook-secret_1"
	testChat   = int64(1001)
)

var testUser = models.User{ID: testChat, FirstName: "Maria", LastName: "López", Username: "marialopez"}

// startSim serves a simulator for the test's bot, without flood limits
// unless a test sets them.
func startSim(t *testing.T) *telegramsim.Server {
	t.Helper()
	sim := telegramsim.New(telegramsim.Options{
		Token:           testToken,
		PerChatInterval: telegramsim.Disabled,
		GlobalPerSecond: telegramsim.Disabled,
		GroupPerMinute:  telegramsim.Disabled,
		WebhookRetryMin: 20 * time.Millisecond,
		WebhookRetryMax: 200 * time.Millisecond,
	})
	srv, err := sim.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// settingsFor points a connector in mode at the simulator.
func settingsFor(mode, apiURL string) connectortest.YAMLSettings {
	return connectortest.YAMLSettings(fmt.Sprintf(
		"token: %q\nmode: %s\nwebhook_secret: %s\napi_url: %s\npoll_timeout: 5s\n",
		testToken, mode, testSecret, apiURL))
}

// newTestConnector builds a connector on env's deps, with fast retries.
func newTestConnector(t *testing.T, env *connectortest.Env, settings connectors.Settings) *Connector {
	t.Helper()
	c, err := New(env.Deps, settings)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	tc := c.(*Connector)
	tc.retry = retryPolicy{initial: 10 * time.Millisecond, max: 100 * time.Millisecond, slow: 200 * time.Millisecond}
	return tc
}

// runConnector runs c until the test ends and checks that Run then returns
// nil promptly. It returns a function that stops Run early and returns
// Run's error.
func runConnector(t *testing.T, c *Connector) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				err = fmt.Errorf("run did not return within 5s of cancellation")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return stop
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testAddress() connectors.Address {
	chat := fmt.Sprint(testChat)
	return connectors.Address{
		ConversationID: normalize.NewConversationID(inPlatform, testBotID, chat),
		Kind:           normalize.KindDirect,
		PlatformID:     chat,
		Account:        testBotID,
	}
}

// harness runs the conformance suite against the simulator in one mode.
func harness(mode string) connectortest.Harness {
	return connectortest.Harness{
		Descriptor: Descriptor,
		Setup: func(t *testing.T) *connectortest.Fixture {
			sim := startSim(t)
			var (
				mu       sync.Mutex
				enqueued int
				last     models.Update
				seq      int
			)
			enqueue := func(u models.Update) {
				// Counting under the same lock as Acked reads, so Acked
				// never sees an update queued but not yet counted.
				mu.Lock()
				defer mu.Unlock()
				if sim.Enqueue(u) == 0 {
					t.Errorf("the simulator refused an update")
					return
				}
				enqueued++
				last = u
			}
			fx := &connectortest.Fixture{
				Settings: settingsFor(mode, sim.URL),
				Deliver: func(_ context.Context, _ *testing.T, n int) {
					for range n {
						mu.Lock()
						seq++
						text := fmt.Sprintf("hello %d", seq)
						mu.Unlock()
						enqueue(sim.UserText(testChat, testUser, text))
					}
				},
				Redeliver: func(context.Context, *testing.T) {
					mu.Lock()
					u := last
					mu.Unlock()
					// The same message again: Telegram gives it a new
					// update_id, but its chat and message ids are the same.
					enqueue(u)
				},
				Acked: func() int {
					mu.Lock()
					defer mu.Unlock()
					return enqueued - sim.PendingUpdates()
				},
				Address: testAddress(),
				FailNextSend: func(kind string) {
					switch kind {
					case connectortest.FailRetryAfter:
						sim.FailNext("sendMessage", 1, telegramsim.TooManyRequests(3))
					case connectortest.FailTransient:
						sim.FailNext("sendMessage", 1, telegramsim.InternalServerError())
					case connectortest.FailPermanent:
						sim.FailNext("sendMessage", 1, telegramsim.BlockedByUser())
					default:
						t.Fatalf("unknown failure kind %q", kind)
					}
				},
				DeliverPoison: func(context.Context, *testing.T) {
					// Telegram caps texts at 4096 characters, but nothing
					// stops an update from being larger than the server's
					// max payload once it is an event (a long caption
					// entity list, a future field).
					enqueue(sim.UserText(testChat, testUser, strings.Repeat("x", connectortest.MaxPayload+1)))
				},
				DeliverUnmappable: func(context.Context, *testing.T) {
					// A reaction whose chat this SDK version cannot decode.
					mu.Lock()
					defer mu.Unlock()
					if _, err := sim.EnqueueJSON([]byte(`{"message_reaction":{"chat":5,"message_id":1,"date":1}}`)); err != nil {
						t.Errorf("enqueueing: %v", err)
						return
					}
					enqueued++
				},
			}
			if mode == ModeWebhook {
				fx.DeliverForged = func(ctx context.Context, t *testing.T, url string) int {
					return postUpdate(ctx, t, url, "not-the-secret", `{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":1,"type":"private"},"text":"forged"}}`)
				}
				fx.DeliverMalformed = func(ctx context.Context, t *testing.T, url string) int {
					return postUpdate(ctx, t, url, testSecret, `{"message":`)
				}
			}
			return fx
		},
	}
}

// postUpdate POSTs body to a webhook URL with secret and returns the status.
func postUpdate(ctx context.Context, t *testing.T, url, secret, body string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SecretTokenHeader, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestConformancePolling(t *testing.T) { connectortest.Run(t, harness(ModePolling)) }

func TestConformanceWebhook(t *testing.T) { connectortest.Run(t, harness(ModeWebhook)) }

func TestExclusiveOnlyWhenPolling(t *testing.T) {
	tests := []struct {
		mode string
		want bool
	}{
		{ModePolling, true},
		{ModeWebhook, false},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			c, err := New(connectors.Deps{ID: "tg"}, settingsFor(tc.mode, "http://127.0.0.1:1"))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.(connectors.Exclusive).Exclusive(); got != tc.want {
				t.Errorf("Exclusive() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewRefusesInvalidSettingsWithTheirPaths(t *testing.T) {
	_, err := New(connectors.Deps{ID: "tg"}, connectortest.YAMLSettings("mode: webhook\n"))
	if err == nil {
		t.Fatal("New accepted settings without a token")
	}
	want := "token: required\nwebhook_secret: required in webhook mode"
	if err.Error() != want {
		t.Errorf("New error = %q, want %q", err, want)
	}
}

func TestWebhookModeRegistersTheWebhookWithSecretAndAllowedUpdates(t *testing.T) {
	ctx := testContext(t)
	sim := startSim(t)
	env := connectortest.NewEnv(t, inPlatform, "tg-hook")
	env.Deps.PublicURL = "http://127.0.0.1:9/base/"
	c := newTestConnector(t, env, settingsFor(ModeWebhook, sim.URL))
	runConnector(t, c)
	env.Health.Wait(ctx, t, normalize.StateRunning, 0)

	info := sim.WebhookInfo()
	if info.URL != "http://127.0.0.1:9/base/webhooks/tg-hook" {
		t.Errorf("webhook URL = %q", info.URL)
	}
	if got, want := fmt.Sprint(info.AllowedUpdates), fmt.Sprint(defaultAllowedUpdates); got != want {
		t.Errorf("allowed_updates = %s, want %s", got, want)
	}
}

func TestWebhookModeWithoutPublicURLRunsWithoutRegistering(t *testing.T) {
	ctx := testContext(t)
	sim := startSim(t)
	env := connectortest.NewEnv(t, inPlatform, "tg-hook")
	c := newTestConnector(t, env, settingsFor(ModeWebhook, sim.URL))
	runConnector(t, c)
	env.Health.Wait(ctx, t, normalize.StateRunning, 0)
	if n := sim.Requests("setWebhook"); n != 0 {
		t.Errorf("setWebhook called %d times without a public URL", n)
	}
}

func TestWebhookModeStopsOnARevokedToken(t *testing.T) {
	ctx := testContext(t)
	sim := startSim(t)
	env := connectortest.NewEnv(t, inPlatform, "tg-hook")
	env.Deps.PublicURL = "http://127.0.0.1:9"
	c := newTestConnector(t, env, settingsFor(ModeWebhook, sim.URL))
	sim.FailNext("setWebhook", 1, telegramsim.APIError(401, telegramsim.DescUnauthorized))

	err := c.Run(ctx)
	if got := connectors.Classify(err); err == nil || got.Class != connectors.ClassPermanent || got.Code != normalize.ErrUnauthorized {
		t.Fatalf("Run = %v, want a permanent unauthorized error", err)
	}
	if h := c.Health(); h.State != normalize.StateBadCredentials || h.Action == "" {
		t.Errorf("health = %+v, want bad_credentials with an action", h)
	}
}
