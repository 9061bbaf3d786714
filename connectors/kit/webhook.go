package kit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// FollowUpTimeout bounds the best-effort calls a connector makes after its
// updates are stored and acknowledged (answering a callback query).
const FollowUpTimeout = 5 * time.Second

// DefaultMaxBody bounds a webhook body when Webhook.MaxBody is 0. The
// shared server limits bodies already (http.max_body_bytes); this guards a
// handler mounted elsewhere.
const DefaultMaxBody = 1 << 20

// retryAfterSeconds is the Retry-After of a 503. Platforms keep their own
// schedules; proxies and tests may honour it.
const retryAfterSeconds = "5"

// Webhook is the skeleton of a platform webhook handler. It owns the ack
// point: POST reads the body within MaxBody (413), Verify checks it is the
// platform's (401, nothing stored), Parse maps it (400, nothing stored),
// Resolve completes it from the ledger, the store keeps every update, and
// only then the answer is 200. Whatever does not fit Budget answers 503
// before the platform gives up: storage that is slow or down, the directory,
// the retries inside Publish — the platform delivers again and the
// deterministic event ids make that a no-op. GET is the verification
// handshake of platforms that have one.
type Webhook struct {
	// Budget is how long the platform waits for an answer (Slack 3s; Meta
	// recommends 5s; 0 is DefaultBudget). The handler stops working on the
	// request at Deadline(Budget) and answers 503.
	Budget time.Duration
	// MaxBody bounds the body (0: DefaultMaxBody).
	MaxBody int64
	// Verify checks that the request comes from the platform: a signature
	// over body, a shared secret header. An error answers 401; it is
	// logged, never shown to the caller.
	Verify func(r *http.Request, body []byte) error
	// Parse maps the body into updates without I/O. An error means the body
	// is not the platform's format at all, and answers 400; an update that
	// is well formed but cannot be mapped is an Update with Err instead,
	// which is dead-lettered and acknowledged.
	Parse func(body []byte) ([]Update, error)
	// Resolve, when set, completes the updates with what the ledger knows
	// (the replies a receipt covers, an echo of Parley's own send, a late
	// failure) before they are stored. An error answers 503.
	Resolve func(ctx context.Context, updates []Update) error
	// Handshake answers GET; nil answers 405.
	Handshake func(w http.ResponseWriter, r *http.Request)
	// OK is the body of a 200 (default {"ok":true}).
	OK []byte
	// After runs once the 200 is sent, with the stored updates, for
	// best-effort follow-ups; its context ends after FollowUpTimeout.
	After func(ctx context.Context, updates []Update)

	Inbound *Inbound
	Log     *slog.Logger
}

// DefaultBudget is the answer budget of a Webhook that states none.
const DefaultBudget = 5 * time.Second

// Deadline is the share of an answer budget a handler may spend working:
// the budget less a tenth (at least 200ms) for the answer to travel, but
// never less than half the budget; a budget of 0 is DefaultBudget.
func Deadline(budget time.Duration) time.Duration {
	budget = budgetOrDefault(budget)
	return max(budget-max(budget/10, 200*time.Millisecond), budget/2)
}

func budgetOrDefault(budget time.Duration) time.Duration {
	if budget <= 0 {
		return DefaultBudget
	}
	return budget
}

var defaultOK = []byte(`{"ok":true}`)

// ServeHTTP implements http.Handler.
func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet:
		if h.Handshake != nil {
			h.Handshake(w, r)
			return
		}
		fallthrough
	default:
		allow := http.MethodPost
		if h.Handshake != nil {
			allow += ", " + http.MethodGet
		}
		w.Header().Set("Allow", allow)
		WriteError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	log := h.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(r.Context(), Deadline(h.Budget))
	defer cancel()

	limit := h.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			WriteError(w, http.StatusRequestEntityTooLarge, "body over the limit")
			return
		}
		WriteError(w, http.StatusBadRequest, "reading the body failed")
		return
	}
	if err := h.Verify(r, body); err != nil {
		log.Warn("refusing a webhook request that is not the platform's", "remote_addr", r.RemoteAddr, "error", err)
		WriteError(w, http.StatusUnauthorized, "the request does not carry the platform's signature or secret")
		return
	}
	updates, err := h.Parse(body)
	if err != nil {
		h.Inbound.Malformed()
		log.Warn("refusing a malformed webhook body", "error", err)
		WriteError(w, http.StatusBadRequest, "malformed body")
		return
	}
	if h.Resolve != nil {
		if err := h.Resolve(ctx, updates); err != nil {
			h.unavailable(w, log, ctx, err)
			return
		}
	}
	if err := h.Inbound.Store(ctx, updates); err != nil {
		h.unavailable(w, log, ctx, err)
		return
	}
	ok := h.OK
	if ok == nil {
		ok = defaultOK
	}
	WriteJSONBytes(w, http.StatusOK, ok)
	if h.After == nil {
		return
	}
	// Acknowledge before the follow-ups, which may take a while and must
	// not make the platform think the delivery failed; it may hang up once
	// it has its answer, and the follow-ups still run.
	_ = http.NewResponseController(w).Flush()
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(r.Context()), FollowUpTimeout)
	defer fcancel()
	h.After(fctx, updates)
}

// unavailable answers 503: the platform retries.
func (h *Webhook) unavailable(w http.ResponseWriter, log *slog.Logger, ctx context.Context, err error) {
	reason := "events cannot be stored right now"
	if ctx.Err() != nil {
		reason = "events could not be stored within the answer budget of " + budgetOrDefault(h.Budget).String()
	}
	log.Warn("answering 503 to a webhook request", "reason", reason, "error", err)
	w.Header().Set("Retry-After", retryAfterSeconds)
	WriteError(w, http.StatusServiceUnavailable, reason)
}

// WriteJSONBytes answers with an encoded JSON body. Content-Length lets
// net/http send the answer in one write, not chunked.
func WriteJSONBytes(w http.ResponseWriter, status int, data []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// WriteJSON answers with v encoded as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	WriteJSONBytes(w, status, data)
}

// WriteError answers {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}
