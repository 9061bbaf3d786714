package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// GraphError is the error body of a Graph API answer:
// {"error":{"message","type","code","error_subcode","fbtrace_id","is_transient"}}.
type GraphError struct {
	Message     string `json:"message"`
	Type        string `json:"type"`
	Code        int    `json:"code"`
	Subcode     int    `json:"error_subcode"`
	FBTraceID   string `json:"fbtrace_id"`
	IsTransient bool   `json:"is_transient"`
}

func (e *GraphError) Error() string {
	s := fmt.Sprintf("graph error %d", e.Code)
	if e.Subcode != 0 {
		s += "/" + strconv.Itoa(e.Subcode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// PlatformCode is "code" or "code/subcode", as reply.failed reports it.
func (e *GraphError) PlatformCode() string {
	if e.Subcode != 0 {
		return strconv.Itoa(e.Code) + "/" + strconv.Itoa(e.Subcode)
	}
	return strconv.Itoa(e.Code)
}

// maxErrorText bounds the text taken from an answer that is not a Graph
// error (a proxy's HTML page must not end up whole in reply.failed).
const maxErrorText = 300

// ParseGraphError reads a Graph error body; nil when body is not one.
func ParseGraphError(body []byte) *GraphError {
	var b struct {
		Error *GraphError `json:"error"`
	}
	if json.Unmarshal(body, &b) != nil || b.Error == nil || b.Error.Code == 0 && b.Error.Message == "" {
		return nil
	}
	return b.Error
}

// RateLimitBackoff is how long an account waits after a rate-limit error
// without a Retry-After: Meta's limits are counted over minutes to a
// rolling day and it gives no wait, so the outbox backs the whole account
// off (the usage headers say more; see the connector docs).
const RateLimitBackoff = time.Minute

// Classify turns an unsuccessful Graph answer (HTTP status, body, the
// Retry-After header) into a classified send error. It goes by the error
// body's code and subcode, not the HTTP status: most Graph errors are 400.
func Classify(status int, body []byte, retryAfter string) error {
	ge := ParseGraphError(body)
	if ge == nil {
		text := string(body)
		if len(text) > maxErrorText {
			text = text[:maxErrorText]
		}
		err := fmt.Errorf("graph answered %d: %s", status, text)
		code := strconv.Itoa(status)
		switch {
		case status == http.StatusTooManyRequests:
			return connectors.AccountRetryAfter(retryAfterOr(retryAfter, RateLimitBackoff), code, err)
		case status == http.StatusUnauthorized:
			return connectors.Permanent(normalize.ErrUnauthorized, code, err)
		case status >= 500 || status == http.StatusRequestTimeout:
			return connectors.Transient(code, err)
		}
		return connectors.Permanent(normalize.ErrPlatformError, code, err)
	}
	code := ge.PlatformCode()
	switch {
	case isRateLimit(ge.Code):
		return connectors.AccountRetryAfter(retryAfterOr(retryAfter, RateLimitBackoff), code, ge)
	case ge.Code == 190:
		return connectors.Permanent(normalize.ErrUnauthorized, code, ge)
	case ge.Code == 551 || ge.Subcode == 1545041:
		return connectors.Permanent(normalize.ErrRecipientUnavailable, code, ge)
	case ge.Code == 10 && (ge.Subcode == 2018278 || ge.Subcode == 2018108 || ge.Subcode == 2018065 || ge.Subcode == 2534022):
		return connectors.Permanent(normalize.ErrWindowClosed, code, ge)
	case ge.Code == 100 && ge.Subcode == 2018001:
		return connectors.Permanent(normalize.ErrRecipientUnavailable, code, ge)
	case ge.Code == 100 && ge.Subcode == 2018109:
		return connectors.Permanent(normalize.ErrTooLarge, code, ge)
	case ge.Code == 100 && ge.Subcode == 2018047:
		return connectors.Transient(code, ge) // attachment upload failed: once more
	case ge.Code == 1 || ge.Code == 2 || ge.Code == 1200 || ge.IsTransient || status >= 500:
		return connectors.Transient(code, ge)
	case ge.Code == 10 || ge.Code == 200 || ge.Code == 230 || ge.Subcode == 2018028 || ge.Subcode == 2018027:
		// Permissions the app lacks: only an operator can fix them.
		return connectors.Permanent(normalize.ErrUnauthorized, code, ge)
	case ge.Code == 100:
		return connectors.Permanent(normalize.ErrInvalidReply, code, ge)
	}
	return connectors.Permanent(normalize.ErrPlatformError, code, ge)
}

// isRateLimit: application, user, page and business-use-case limits, and
// Messenger's (80006) and Instagram's (80002) messaging limits.
func isRateLimit(code int) bool {
	switch code {
	case 4, 17, 32, 613, 80002, 80006:
		return true
	}
	return false
}

// IsBadCredentials reports whether err means the token is no longer valid
// (the connector turns bad_credentials).
func IsBadCredentials(err error) bool {
	ge, ok := errors.AsType[*GraphError](err)
	return ok && ge.Code == 190
}

// retryAfterOr reads a Retry-After of whole seconds, else def.
func retryAfterOr(h string, def time.Duration) time.Duration {
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return def
}
