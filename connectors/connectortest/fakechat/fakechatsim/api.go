package fakechatsim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/connectors/simkit"
)

// Keys of FailNext.
const (
	KeySend  = "send"  // POST /v1/{account}/messages
	KeyMedia = "media" // GET /media/{id}
)

// Error words of the messages and media APIs ({"error":{"code"}}).
const (
	CodeBlocked      = "blocked"
	CodeInvalid      = "invalid"
	CodeWindow       = "window"
	CodeNoUser       = "no_user"
	CodeUnauthorized = "unauthorized"
	CodeRateLimited  = "rate_limited"
	CodeUnavailable  = "unavailable"
	CodeInternal     = "internal"
	CodeNotFound     = "not_found"
	CodeGone         = "gone"
	CodeTooLarge     = "too_large"
)

// Limits of one message that the messages API enforces.
const (
	MaxTextRunes        = 2000
	MaxChoices          = 10
	MaxChoiceIDBytes    = 100
	MaxChoiceTitleRunes = 20
	// HumanAgentTag is the one message tag fakechat knows.
	HumanAgentTag = "HUMAN_AGENT"
)

// maxRequestBody bounds a request body.
const maxRequestBody = 1 << 20

// errorBody renders fakechat's error JSON.
func errorBody(code, message string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": message}})
	return b
}

// APIError is an answer of status with fakechat's error body.
func APIError(status int, code, message string) simkit.Failure {
	return simkit.Status(status, errorBody(code, message))
}

// Failures as fakechat answers them, for FailNext.
func RateLimited(retryAfter time.Duration) simkit.Failure {
	return APIError(http.StatusTooManyRequests, CodeRateLimited, "too many messages").WithRetryAfter(retryAfter)
}

// Unavailable is fakechat's 503.
func Unavailable() simkit.Failure {
	return APIError(http.StatusServiceUnavailable, CodeUnavailable, "service temporarily unavailable")
}

// InternalError is fakechat's 500.
func InternalError() simkit.Failure {
	return APIError(http.StatusInternalServerError, CodeInternal, "internal error")
}

// BadGatewayHTML is a 502 with an HTML body, as a proxy in front of
// fakechat answers.
func BadGatewayHTML() simkit.Failure {
	f := simkit.Status(http.StatusBadGateway, []byte("<html><body>502 Bad Gateway</body></html>"))
	f.Header = http.Header{"Content-Type": {"text/html"}}
	return f
}

// Blocked is the 403 of a send to a customer who blocked the business.
func Blocked() simkit.Failure {
	return APIError(http.StatusForbidden, CodeBlocked, "the customer blocked this account")
}

// WindowClosed is the 400 of a send outside the reply window.
func WindowClosed() simkit.Failure {
	return APIError(http.StatusBadRequest, CodeWindow, "outside the 24-hour window; tag HUMAN_AGENT replies within 7 days")
}

// NoUser is the 404 of a send to a customer the account does not know.
func NoUser() simkit.Failure {
	return APIError(http.StatusNotFound, CodeNoUser, "no such customer for this account")
}

// Unauthorized is the 401 of a wrong or revoked token.
func Unauthorized() simkit.Failure {
	return APIError(http.StatusUnauthorized, CodeUnauthorized, "invalid access token")
}

// routes is the simulator's API.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/{account}/messages", s.serveMessages)
	mux.HandleFunc("GET /media/{id}", s.serveMedia)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such endpoint")
	})
	return mux
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	kit.WriteJSONBytes(w, status, errorBody(code, message))
}

// bearer reports whether r carries token, compared in constant time.
func bearer(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// wireSend is the body of a send.
type wireSend struct {
	To         string   `json:"to"`
	Text       string   `json:"text"`
	Choices    []Choice `json:"choices"`
	ReplyTo    string   `json:"reply_to"`
	Attachment *struct {
		URL string `json:"url"`
	} `json:"attachment"`
	Tag string `json:"tag"`
}

// serveMessages is POST /v1/{account}/messages. The checks run in the
// order fakechat documents — token, injected failure, message, customer,
// rate limit — so a refused send records nothing and consumes no rate
// budget.
func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request) {
	account := r.PathValue("account")
	token, ok := s.tokens[account]
	if !ok {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such account")
		return
	}
	if !bearer(r, token) {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "invalid access token")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, CodeTooLarge, "body over 1 MB")
			return
		}
		writeError(w, http.StatusBadRequest, CodeInvalid, "the body could not be read")
		return
	}
	if f, ok := s.failures.Take(KeySend); ok && f.Serve(w, r) {
		s.log.Debug("fakechatsim injected a failure", "account", account, "status", f.Status)
		return
	}
	var m wireSend
	if err := json.Unmarshal(body, &m); err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "the body is not a message object")
		return
	}
	if problem := checkSend(&m); problem != "" {
		writeError(w, http.StatusBadRequest, CodeInvalid, problem)
		return
	}

	s.mu.Lock()
	known, blocked, delay := s.known[account+"\x00"+m.To], s.blocked[m.To], s.sendDelay
	s.mu.Unlock()
	switch {
	case !known:
		writeError(w, http.StatusNotFound, CodeNoUser, "no such customer for this account")
		return
	case blocked:
		writeError(w, http.StatusForbidden, CodeBlocked, "the customer blocked this account")
		return
	}
	if ok, wait := s.limiter.Allow(account, s.now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(simkit.RetryAfterSeconds(wait)))
		writeError(w, http.StatusTooManyRequests, CodeRateLimited, "too many messages for this account")
		return
	}
	if !kit.Sleep(r.Context(), delay) {
		writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "shutting down")
		return
	}

	s.mu.Lock()
	s.nextOut++
	sent := SentMessage{
		ID: "fm_out_" + strconv.Itoa(s.nextOut), Account: account, To: m.To, Text: m.Text,
		Choices: m.Choices, ReplyTo: m.ReplyTo, Tag: m.Tag, At: s.now(),
	}
	if m.Attachment != nil {
		sent.AttachmentURL = m.Attachment.URL
	}
	s.sent = append(s.sent, sent)
	close(s.sentCh)
	s.sentCh = make(chan struct{})
	s.mu.Unlock()
	s.log.Debug("fakechatsim accepted a message", "account", account, "id", sent.ID)
	kit.WriteJSON(w, http.StatusOK, map[string]string{"id": sent.ID})
}

// checkSend applies fakechat's limits to a message; "" when it is fine.
func checkSend(m *wireSend) string {
	switch {
	case m.To == "":
		return "to is required"
	case m.Text == "" && m.Attachment == nil:
		return "text or attachment is required"
	case utf8.RuneCountInString(m.Text) > MaxTextRunes:
		return "text is over " + strconv.Itoa(MaxTextRunes) + " characters"
	case len(m.Choices) > MaxChoices:
		return "at most " + strconv.Itoa(MaxChoices) + " choices"
	case m.Tag != "" && m.Tag != HumanAgentTag:
		return "unknown tag " + strconv.Quote(m.Tag)
	}
	if m.Attachment != nil {
		u, err := url.Parse(m.Attachment.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "attachment.url must be an absolute http(s) URL"
		}
	}
	for _, c := range m.Choices {
		if c.ID == "" || len(c.ID) > MaxChoiceIDBytes {
			return "a choice id needs 1 to " + strconv.Itoa(MaxChoiceIDBytes) + " bytes"
		}
		if n := utf8.RuneCountInString(c.Title); n == 0 || n > MaxChoiceTitleRunes {
			return "a choice title needs 1 to " + strconv.Itoa(MaxChoiceTitleRunes) + " characters"
		}
	}
	return ""
}
