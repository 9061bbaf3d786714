package fakechat

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// maxErrorText bounds the text taken from a platform answer: a proxy's
// HTML error page must not end up whole in a reply.failed event.
const maxErrorText = 300

// Error words of fakechat's error body {"error":{"code","message"}}.
const (
	codeBlocked = "blocked" // the customer blocked the account
	codeInvalid = "invalid" // the message is malformed or over a limit
	codeWindow  = "window"  // outside the reply window, and no valid tag
	codeNoUser  = "no_user" // no such customer for this account
)

// Numeric codes of a failed status ({"type":"status","status":"failed",
// "error":{"code":N}}), which fakechat sends after it accepted a message
// it then could not deliver.
const (
	lateWindowClosed = 131047 // the window closed before delivery
	lateBlocked      = 131026 // the customer blocked the account, or cannot receive
)

// defaultRetryAfter is the wait of a 429 whose Retry-After is missing or
// unreadable.
const defaultRetryAfter = time.Second

// apiError is an unsuccessful answer of the messages or media API.
type apiError struct {
	Status  int
	Code    string // the error word, "" when the body had none
	Message string
}

func (e *apiError) Error() string {
	msg := "fakechat answered " + strconv.Itoa(e.Status)
	if e.Code != "" {
		msg += " " + e.Code
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// platformCode is the error's platform_code: the status, and the error
// word when there is one ("403/blocked").
func (e *apiError) platformCode() string {
	if e.Code == "" {
		return strconv.Itoa(e.Status)
	}
	return strconv.Itoa(e.Status) + "/" + e.Code
}

// parseAPIError reads an error answer. A body that is not fakechat's
// error JSON (a proxy's page) keeps its status and a cut of its text.
func parseAPIError(status int, body []byte) *apiError {
	var b struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	e := &apiError{Status: status}
	if err := json.Unmarshal(body, &b); err == nil {
		e.Code, e.Message = b.Error.Code, b.Error.Message
	} else {
		e.Message = strings.TrimSpace(string(body))
	}
	if len(e.Message) > maxErrorText {
		e.Message = strings.ToValidUTF8(e.Message[:maxErrorText], "") + "…"
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// classify maps an unsuccessful answer of the messages API to a delivery
// class. It is pure.
//
//	429 (Retry-After: seconds)   retry after
//	5xx                          transient
//	401                          permanent unauthorized
//	403 blocked                  permanent recipient_unavailable
//	403 other                    permanent unauthorized (the token lacks a permission)
//	400 window                   permanent window_closed
//	400 invalid, other 400       permanent invalid_reply
//	404 no_user                  permanent unknown_conversation
//	413                          permanent too_large
//	anything else                permanent platform_error
func classify(status int, header http.Header, body []byte) error {
	e := parseAPIError(status, body)
	code := e.platformCode()
	switch {
	case status == http.StatusTooManyRequests:
		return connectors.RetryAfter(retryAfter(header), code, e)
	case status >= 500:
		return connectors.Transient(code, e)
	case status == http.StatusUnauthorized:
		return connectors.Permanent(normalize.ErrUnauthorized, code, e)
	case status == http.StatusForbidden && e.Code == codeBlocked:
		return connectors.Permanent(normalize.ErrRecipientUnavailable, code, e)
	case status == http.StatusForbidden:
		return connectors.Permanent(normalize.ErrUnauthorized, code, e)
	case status == http.StatusBadRequest && e.Code == codeWindow:
		return connectors.Permanent(normalize.ErrWindowClosed, code, e)
	case status == http.StatusBadRequest:
		return connectors.Permanent(normalize.ErrInvalidReply, code, e)
	case status == http.StatusNotFound && e.Code == codeNoUser:
		return connectors.Permanent(normalize.ErrUnknownConversation, code, e)
	case status == http.StatusRequestEntityTooLarge:
		return connectors.Permanent(normalize.ErrTooLarge, code, e)
	}
	return connectors.Permanent(normalize.ErrPlatformError, code, e)
}

// retryAfter reads a Retry-After of whole seconds.
func retryAfter(h http.Header) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || s <= 0 {
		return defaultRetryAfter
	}
	return time.Duration(s) * time.Second
}

// lateFailure is the reply error of a failed status.
func lateFailure(code int, message string) normalize.ReplyError {
	e := normalize.ReplyError{Code: normalize.ErrPlatformError, PlatformCode: strconv.Itoa(code)}
	switch code {
	case lateWindowClosed:
		e.Code = normalize.ErrWindowClosed
	case lateBlocked:
		e.Code = normalize.ErrRecipientUnavailable
	}
	if len(message) > maxErrorText {
		message = strings.ToValidUTF8(message[:maxErrorText], "") + "…"
	}
	e.Message = fmt.Sprintf("fakechat could not deliver the message after accepting it (%d)", code)
	if message != "" {
		e.Message += ": " + message
	}
	return e
}
