package telegram

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-telegram/bot"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/normalize"
)

func TestSendFailuresAreClassified(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(sim *telegramsim.Server)
		class      connectors.Class
		code       normalize.ErrorCode
		platform   string        // PlatformCode
		retryAfter time.Duration // for ClassRetryAfter
		status     int           // what the simulator answered (0: dropped)
		msg        string        // in the error's text
		check      func(t *testing.T, c *Connector, env *connectortest.Env)
	}{
		{
			name:  "flood control waits exactly retry_after",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.TooManyRequests(7)) },
			class: connectors.ClassRetryAfter, code: normalize.ErrRateLimited, platform: "429", retryAfter: 7 * time.Second, status: 429,
		},
		{
			name:  "a real flood limit of the simulator is honoured too",
			setup: func(sim *telegramsim.Server) { sim.SetRateLimits(telegramsim.RateLimits{PerChatInterval: time.Hour}) },
			class: connectors.ClassRetryAfter, code: normalize.ErrRateLimited, platform: "429", status: 429,
		},
		{
			name:  "a user who blocked the bot is unreachable, and only classified so",
			setup: func(sim *telegramsim.Server) { sim.Block(testChat) },
			class: connectors.ClassPermanent, code: normalize.ErrRecipientUnavailable, platform: "403", status: 403,
			msg: "blocked",
			check: func(t *testing.T, _ *Connector, env *connectortest.Env) {
				// SendPart classifies; recording the conversation as
				// unreachable is the outbox's.
				e, _, err := env.Directory.Get(t.Context(), testAddress().ConversationID)
				if err != nil {
					t.Fatal(err)
				}
				if !e.Reachable {
					t.Errorf("SendPart wrote the directory: reachable=%v why=%q", e.Reachable, e.UnreachableWhy)
				}
			},
		},
		{
			name:  "an unknown chat is unknown_conversation",
			setup: func(sim *telegramsim.Server) { sim.SetChatNotFound(testChat) },
			class: connectors.ClassPermanent, code: normalize.ErrUnknownConversation, platform: "400", status: 400,
		},
		{
			name:  "a group upgraded to a supergroup names the new chat",
			setup: func(sim *telegramsim.Server) { sim.MigrateChat(testChat, -100777) },
			class: connectors.ClassPermanent, code: normalize.ErrPlatformError, platform: "400", status: 400,
			msg: "-100777",
		},
		{
			name: "a message Telegram finds too long is too_large",
			setup: func(sim *telegramsim.Server) {
				sim.FailNext("sendMessage", 1, telegramsim.APIError(400, telegramsim.DescMessageTooLong))
			},
			class: connectors.ClassPermanent, code: normalize.ErrTooLarge, platform: "400", status: 400,
		},
		{
			name: "entities Telegram cannot parse are invalid_reply",
			setup: func(sim *telegramsim.Server) {
				sim.FailNext("sendMessage", 1, telegramsim.APIError(400, telegramsim.DescCantParseEntities+"unclosed tag"))
			},
			class: connectors.ClassPermanent, code: normalize.ErrInvalidReply, platform: "400", status: 400,
		},
		{
			name: "a revoked token is unauthorized and marks the connector",
			setup: func(sim *telegramsim.Server) {
				sim.FailNext("sendMessage", 1, telegramsim.APIError(401, telegramsim.DescUnauthorized))
			},
			class: connectors.ClassPermanent, code: normalize.ErrUnauthorized, platform: "401", status: 401,
			check: func(t *testing.T, c *Connector, _ *connectortest.Env) {
				if h := c.Health(); h.State != normalize.StateBadCredentials {
					t.Errorf("health %s after a 401, want bad_credentials", h.State)
				}
			},
		},
		{
			name:  "a 404 is a configuration problem",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.APIError(404, "")) },
			class: connectors.ClassPermanent, code: normalize.ErrUnauthorized, platform: "404", status: 404,
		},
		{
			name:  "a 500 is transient",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.InternalServerError()) },
			class: connectors.ClassTransient, code: normalize.ErrPlatformError, platform: "500", status: 500,
		},
		{
			name:  "a 502 HTML page from a proxy is transient",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.BadGatewayHTML()) },
			class: connectors.ClassTransient, code: normalize.ErrPlatformError, status: 502,
		},
		{
			name:  "a dropped connection is transient",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.DropConnection()) },
			class: connectors.ClassTransient, code: normalize.ErrPlatformError, status: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			sim := startSim(t)
			env := connectortest.NewEnv(t, inPlatform, "tg-err")
			c := newTestConnector(t, env, settingsFor(ModePolling, sim.URL))
			to := testAddress()
			// The conversation is known from an inbound message.
			in := env.Publisher.Publish(ctx, mustMap(t, sim, 1))
			if in != nil {
				t.Fatal(in)
			}
			if tc.status == 429 && tc.retryAfter == 0 {
				// A first message passes; the second meets the limit.
				parts, _ := c.Plan(&normalize.Reply{Text: "first"}, to, connectors.Admission{})
				if _, err := c.SendPart(ctx, to, parts[0]); err != nil {
					t.Fatal(err)
				}
			}
			tc.setup(sim)
			before := sim.Requests("sendMessage")

			parts, err := c.Plan(&normalize.Reply{Text: "hello"}, to, connectors.Admission{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.SendPart(ctx, to, parts[0])
			if err == nil {
				t.Fatal("SendPart succeeded")
			}
			if n := sim.Requests("sendMessage") - before; n != 1 {
				t.Errorf("the simulator received %d sendMessage calls, want exactly 1", n)
			}
			if sim.Responses("sendMessage")[tc.status] < 1 {
				t.Errorf("the simulator never answered %d: %v", tc.status, sim.Responses("sendMessage"))
			}
			got := connectors.Classify(err)
			if got.Class != tc.class || got.Code != tc.code {
				t.Errorf("classified %s/%s, want %s/%s (error: %v)", got.Class, got.Code, tc.class, tc.code, err)
			}
			if tc.platform != "" && got.PlatformCode != tc.platform {
				t.Errorf("platform code %q, want %q", got.PlatformCode, tc.platform)
			}
			if tc.class == connectors.ClassRetryAfter {
				if tc.retryAfter != 0 && got.RetryAfter != tc.retryAfter || got.RetryAfter <= 0 {
					t.Errorf("retry after %s, want %s", got.RetryAfter, tc.retryAfter)
				}
			}
			if msg := err.Error(); strings.Contains(msg, testToken) || len(msg) > 600 {
				t.Errorf("error text leaks the token or is unbounded (%d bytes): %.200s", len(msg), msg)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
			if tc.check != nil {
				tc.check(t, c, env)
			}
		})
	}
}

// mustMap maps a text update from the test user to its events.
func mustMap(t *testing.T, sim *telegramsim.Server, id int64) *normalize.Event {
	t.Helper()
	u := sim.UserText(testChat, testUser, "hi")
	u.ID = id
	res, err := mapUpdate(inboundContext{Region: connectortest.Region, Connector: "tg-err", BotID: testBotID, ReceivedAt: time.Now()}, &u)
	if err != nil || len(res.Events) != 1 {
		t.Fatalf("mapping: %v, %d events", err, len(res.Events))
	}
	return res.Events[0]
}

func TestClassifyUnwrapsTheSDKsErrors(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		class connectors.Class
		code  normalize.ErrorCode
	}{
		{"a wrapped 429 is still found", fmt.Errorf("sending: %w", &bot.TooManyRequestsError{Message: "too many requests", RetryAfter: 2}),
			connectors.ClassRetryAfter, normalize.ErrRateLimited},
		{"a 429 without retry_after waits a second", &bot.TooManyRequestsError{Message: "too many requests"},
			connectors.ClassRetryAfter, normalize.ErrRateLimited},
		{"bot kicked from the group", fmt.Errorf("%w, Forbidden: bot was kicked from the group chat", bot.ErrorForbidden),
			connectors.ClassPermanent, normalize.ErrRecipientUnavailable},
		{"an unknown 400", fmt.Errorf("%w, Bad Request: something new", bot.ErrorBadRequest),
			connectors.ClassPermanent, normalize.ErrPlatformError},
		{"a conflict is transient", fmt.Errorf("%w, Conflict", bot.ErrorConflict),
			connectors.ClassTransient, normalize.ErrPlatformError},
		{"an error the SDK did not type", errors.New("error decode response body for method sendMessage, <html>"),
			connectors.ClassTransient, normalize.ErrPlatformError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := connectors.Classify(classify(tc.err))
			if got.Class != tc.class || got.Code != tc.code {
				t.Errorf("classify = %s/%s, want %s/%s", got.Class, got.Code, tc.class, tc.code)
			}
			if got.Class == connectors.ClassRetryAfter && got.RetryAfter < time.Second {
				t.Errorf("retry after %s, want at least 1s", got.RetryAfter)
			}
		})
	}
}

func TestClassifyBoundsAnErrorsText(t *testing.T) {
	long := errors.New("error decode response body for method sendMessage, " + strings.Repeat("<p>proxy page</p>", 200))
	err := classify(long)
	if n := len(err.Error()); n > maxErrorText+50 {
		t.Errorf("error text is %d bytes", n)
	}
	if !errors.Is(err, long) {
		t.Error("the bounded error lost its cause")
	}
}
