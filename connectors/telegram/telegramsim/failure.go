package telegramsim

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parley-gateway/parley/connectors/simkit"
)

// Failure is an answer injected in place of the real one by FailNext or FailChat.
//
// Delay is applied first. Then Drop closes the connection without an answer; otherwise a non-zero
// Status answers with that HTTP status: Body verbatim when set (e.g. an HTML error page from a proxy),
// else a Bot API error with error_code Status, Description (default: the Bot API's wording for the
// status) and parameters retry_after / migrate_to_chat_id. A Failure with only Delay slows the call
// down and then answers it normally.
type Failure struct {
	Status          int
	Description     string
	RetryAfter      int // seconds; for 429
	MigrateToChatID int64
	Body            string // raw body instead of Bot API JSON
	ContentType     string // of Body; default "text/html"
	Drop            bool
	Delay           time.Duration
}

// InternalServerError is a 500 Bot API error.
func InternalServerError() Failure {
	return Failure{Status: http.StatusInternalServerError, Description: DescInternalError}
}

// BadGatewayHTML is a 502 with an HTML body, as a proxy in front of the Bot API answers.
func BadGatewayHTML() Failure {
	return Failure{Status: http.StatusBadGateway, Body: "<html>Bad Gateway</html>", ContentType: "text/html"}
}

// TooManyRequests is a 429 flood-control error with parameters.retry_after.
func TooManyRequests(retryAfter int) Failure {
	return Failure{Status: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// BlockedByUser is the 403 a send to a user who blocked the bot gets.
func BlockedByUser() Failure {
	return Failure{Status: http.StatusForbidden, Description: DescBlocked}
}

// APIError is a Bot API error with the given status and description, e.g.
// APIError(400, "Bad Request: chat not found").
func APIError(status int, description string) Failure {
	return Failure{Status: status, Description: description}
}

// DropConnection closes the connection without answering.
func DropConnection() Failure { return Failure{Drop: true} }

// Delay answers normally after d (or fails, combined with other fields).
func Delay(d time.Duration) Failure { return Failure{Delay: d} }

func (f Failure) description() string {
	if f.Description != "" {
		return f.Description
	}
	switch f.Status {
	case http.StatusBadRequest:
		return "Bad Request"
	case http.StatusUnauthorized:
		return DescUnauthorized
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return DescNotFound
	case http.StatusConflict:
		return "Conflict"
	case http.StatusTooManyRequests:
		return fmt.Sprintf(DescTooManyRequestsFmt, max(f.RetryAfter, 1))
	}
	return http.StatusText(f.Status)
}

// sim is f as simkit serves it: the raw Body, or the Bot API's error JSON.
func (f Failure) sim() simkit.Failure {
	out := simkit.Failure{Delay: f.Delay, Drop: f.Drop}
	switch {
	case f.Drop || f.Status == 0:
		return out
	case f.Body != "":
		ct := f.ContentType
		if ct == "" {
			ct = "text/html"
		}
		out.Status, out.Body, out.Header = f.Status, []byte(f.Body), http.Header{"Content-Type": {ct}}
		return out
	}
	retry := f.RetryAfter
	if f.Status == http.StatusTooManyRequests {
		retry = max(retry, 1)
	}
	out.Status, out.Body = f.Status, errorJSON(&apiError{Code: f.Status, Description: f.description(), RetryAfter: retry, MigrateTo: f.MigrateToChatID})
	return out
}

// Injected failures are kept by key: a method's lower-cased name (the Bot API ignores its case;
// FileDownloadKey for downloads) or chatKey(id) for FailChat. Method names have no colon, so the two
// never meet, and one list keeps the order between both kinds.

func chatKey(id int64) string { return "chat:" + strconv.FormatInt(id, 10) }

// FailNext makes the next n calls of method (case-insensitive; "" or "*" for any method) answer
// with f. Rules apply in the order they were added, before the call is otherwise handled.
func (s *Sim) FailNext(method string, n int, f Failure) {
	key := strings.ToLower(method)
	if key == "" {
		key = simkit.AnyKey
	}
	s.failures.FailNext(key, n, f.sim())
}

// FailChat makes the next n calls whose chat_id is chatID (sends, chat actions) answer with f.
func (s *Sim) FailChat(chatID int64, f Failure, n int) {
	s.failures.FailNext(chatKey(chatID), n, f.sim())
}

// ClearFailures removes every pending injected failure.
func (s *Sim) ClearFailures() { s.failures.Clear() }

// takeFailure consumes the first failure that applies to a call of method with params p.
func (s *Sim) takeFailure(method string, p *params) (simkit.Failure, bool) {
	if chatID, ok, _ := p.int64("chat_id"); ok {
		return s.failures.Take(strings.ToLower(method), chatKey(chatID))
	}
	return s.failures.Take(strings.ToLower(method))
}
