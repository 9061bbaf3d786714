package telegram

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/secret"
	"github.com/parley-gateway/parley/normalize"
)

// maxErrorText bounds the text of an error taken from a platform answer: a
// proxy's HTML error page must not end up whole in a reply.failed event.
const maxErrorText = 300

// sdkCodePattern finds the status in go-telegram/bot's untyped error for
// codes it has no sentinel for: "error response from telegram for method
// sendMessage, 502 Bad Gateway".
var sdkCodePattern = regexp.MustCompile(`error response from telegram for method \w+, (\d{3})\b`)

// classifySend turns an SDK error of a send into a delivery class (§T4 of
// the platform notes). A refused token also shows in health: replies cannot
// go until an operator replaces it.
func (c *Connector) classifySend(err error) error {
	class := classify(err)
	if ce, ok := errors.AsType[*connectors.Error](class); ok && ce.Code == normalize.ErrUnauthorized {
		// Shown, not returned: in webhook mode Run goes on, and the first
		// poll of a poller ends it with the same finding.
		_ = c.health.Fatal(normalize.StateBadCredentials, "telegram rejected the bot token ("+ce.PlatformCode+") on a send", actionBadToken, class)
	}
	return class
}

// classify maps an error of a Bot API call to a connectors class. It is
// pure: the caller acts on what the class says.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ce *connectors.Error
	if errors.As(err, &ce) {
		return err
	}
	var tooMany *bot.TooManyRequestsError
	if errors.As(err, &tooMany) {
		// A plain type assertion (bot.IsTooManyRequestsError) would miss a
		// wrapped one, and the error is not errors.Is ErrorTooManyRequests.
		wait := time.Duration(tooMany.RetryAfter) * time.Second
		if wait <= 0 {
			wait = time.Second
		}
		return connectors.RetryAfter(wait, "429", err)
	}
	var migrate *bot.MigrateError
	if errors.As(err, &migrate) {
		// The group became a supergroup with a new chat id, which is a new
		// conversation for Parley: its next message creates the entry that
		// replies must go to.
		return connectors.Permanent(normalize.ErrPlatformError, "400",
			fmt.Errorf("the group was upgraded to supergroup %d; reply in its new conversation: %w", migrate.MigrateToChatID, err))
	}
	desc := strings.ToLower(telegramDescription(err))
	switch {
	case errors.Is(err, bot.ErrorForbidden):
		return connectors.Permanent(normalize.ErrRecipientUnavailable, "403", err)
	case errors.Is(err, bot.ErrorBadRequest):
		return connectors.Permanent(badRequestCode(desc), "400", err)
	case errors.Is(err, bot.ErrorUnauthorized):
		return connectors.Permanent(normalize.ErrUnauthorized, "401", err)
	case errors.Is(err, bot.ErrorNotFound):
		// The Bot API answers 404 for a malformed token or a wrong api_url:
		// a configuration problem that no retry fixes.
		return connectors.Permanent(normalize.ErrUnauthorized, "404", err)
	case errors.Is(err, bot.ErrorConflict):
		return connectors.Transient("409", err)
	case errors.Is(err, context.Canceled):
		return connectors.Transient("", err)
	}
	if m := sdkCodePattern.FindStringSubmatch(err.Error()); m != nil {
		return connectors.Transient(m[1], shorten(err))
	}
	// Network errors, timeouts and bodies that are not JSON (a proxy's
	// 502 page) are Telegram's side or the way there: try again.
	return connectors.Transient("", shorten(err))
}

// badRequestCode picks the reply.failed code of a 400 by its description.
func badRequestCode(desc string) normalize.ErrorCode {
	switch {
	case strings.Contains(desc, "chat not found"), strings.Contains(desc, "peer_id_invalid"),
		strings.Contains(desc, "user not found"):
		return normalize.ErrUnknownConversation
	case strings.Contains(desc, "too long"), strings.Contains(desc, "too big"), strings.Contains(desc, "too large"):
		return normalize.ErrTooLarge
	case strings.Contains(desc, "can't parse entities"), strings.Contains(desc, "text is empty"),
		strings.Contains(desc, "message to be replied not found"), strings.Contains(desc, "wrong file identifier"),
		strings.Contains(desc, "failed to get http url content"), strings.Contains(desc, "wrong type of the web page content"),
		strings.Contains(desc, "button_data_invalid"), strings.Contains(desc, "reply markup"):
		return normalize.ErrInvalidReply
	}
	return normalize.ErrPlatformError
}

// telegramDescription is the Bot API's description of a failure, as the
// SDK formats it ("forbidden, Forbidden: bot was blocked by the user").
func telegramDescription(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{bot.ErrorForbidden, bot.ErrorBadRequest, bot.ErrorUnauthorized, bot.ErrorNotFound, bot.ErrorConflict} {
		if errors.Is(err, sentinel) {
			if _, rest, ok := strings.Cut(msg, sentinel.Error()+", "); ok {
				return rest
			}
		}
	}
	return msg
}

// shortError keeps an error's chain while bounding its text.
type shortError struct {
	msg string
	err error
}

func (e *shortError) Error() string { return e.msg }
func (e *shortError) Unwrap() error { return e.err }

// shorten bounds err's text to maxErrorText bytes.
func shorten(err error) error {
	msg := err.Error()
	if len(msg) <= maxErrorText {
		return err
	}
	cut := maxErrorText
	for cut > 0 && !isRuneStart(msg[cut]) {
		cut--
	}
	return &shortError{msg: msg[:cut] + "…", err: err}
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// apiError is an unsuccessful answer of a Bot API call that Parley makes
// itself (getUpdates, file downloads) rather than through the SDK.
type apiError struct {
	Method      string
	Status      int // HTTP status
	Code        int // the Bot API's error_code; 0 when the body was not Bot API JSON
	Description string
	RetryAfter  int // seconds, from parameters.retry_after
}

func (e *apiError) Error() string {
	code := e.Code
	if code == 0 {
		code = e.Status
	}
	if e.Description == "" {
		return fmt.Sprintf("telegram %s: %d", e.Method, code)
	}
	return fmt.Sprintf("telegram %s: %d %s", e.Method, code, e.Description)
}

// code is the Bot API's error code, or the HTTP status without one.
func (e *apiError) code() int {
	if e.Code != 0 {
		return e.Code
	}
	return e.Status
}

// platformCode is code as a string, for connectors.Error.
func (e *apiError) platformCode() string { return strconv.Itoa(e.code()) }

// scrubURL removes the bot token from a transport error: net/http puts the
// request URL, which holds the token, into every *url.Error.
func scrubURL(err error, token secret.String) error {
	var ue *url.Error
	if token != "" && errors.As(err, &ue) {
		ue.URL = strings.ReplaceAll(ue.URL, token.Reveal(), secret.Redacted)
	}
	return err
}
