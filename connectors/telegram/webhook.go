package telegram

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/parley-gateway/parley/connectors"
)

// SecretTokenHeader carries setWebhook's secret_token in every webhook
// request.
const SecretTokenHeader = "X-Telegram-Bot-Api-Secret-Token"

// maxUpdateBytes bounds one webhook body. The shared server limits bodies
// already; an update is a few KB, so this only guards a handler mounted
// elsewhere.
const maxUpdateBytes = 1 << 20

// storeRetryAfter is the Retry-After of a 503, in seconds. Telegram keeps
// its own schedule, but other callers (tests, proxies) may honour it.
const storeRetryAfter = "5"

// serveWebhook is Parley's own webhook handler. Unlike the SDK's, it
// answers 200 only after the update's events are stored, and refuses a
// wrong secret: Telegram retries every non-2xx answer.
func (c *Connector) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSONError(w, http.StatusMethodNotAllowed, "only POST is allowed")
		return
	}
	got := r.Header.Get(SecretTokenHeader)
	if subtle.ConstantTimeCompare([]byte(got), []byte(c.cfg.webhookSecret)) != 1 {
		c.log.Warn("refusing a webhook request with a wrong secret token", "remote_addr", r.RemoteAddr)
		writeJSONError(w, http.StatusUnauthorized, "wrong secret token")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxUpdateBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeJSONError(w, http.StatusRequestEntityTooLarge, "update too large")
			return
		}
		writeJSONError(w, http.StatusBadRequest, "reading the update failed")
		return
	}

	c.stats.received.Add(1)
	u, err := parseUpdate(body)
	if err != nil && !errors.Is(err, errUnreadableUpdate) {
		c.stats.failed.Add(1)
		c.log.Warn("refusing a malformed telegram update", "error", err)
		writeJSONError(w, http.StatusBadRequest, "malformed update")
		return
	}
	var res inboundResult
	if err == nil {
		res, err = mapUpdate(c.inboundContext(), u)
	}
	if err != nil {
		// The body is a real update Parley cannot turn into events. Refusing
		// it would make Telegram redeliver it for ever and hold back every
		// update behind it, so it is acknowledged, counted and reported at
		// Error for an operator — the same as the poll loop skips it.
		c.stats.failed.Add(1)
		c.log.Error("skipping a telegram update that cannot be mapped", "update_id", u.ID, "error", err)
		writeOK(w)
		return
	}
	if res.Ignored != "" {
		c.stats.ignored.Add(1)
		c.log.Debug("ignoring a telegram update", "update_id", u.ID, "kind", res.Ignored)
	}

	if err := c.publish(r.Context(), res.Events); err != nil {
		c.log.Warn("storing a telegram update", "update_id", u.ID, "error", err)
		if errors.Is(err, connectors.ErrNotDurable) {
			// Telegram retries; the retry maps to the same event ids.
			w.Header().Set("Retry-After", storeRetryAfter)
			writeJSONError(w, http.StatusServiceUnavailable, "events cannot be stored right now")
			return
		}
		writeJSONError(w, http.StatusInternalServerError, "events cannot be stored")
		return
	}
	c.log.Debug("stored a telegram update", "update_id", u.ID, "events", len(res.Events))

	writeOK(w)
	if res.CallbackQueryID == "" && res.Reachability == nil {
		return // nothing to follow up: net/http sends the answer now
	}
	// Acknowledge before the follow-up calls, which may take a while and
	// must not make Telegram think the delivery failed.
	_ = http.NewResponseController(w).Flush()
	// Telegram may hang up once it has its answer; the follow-ups still run.
	c.afterStored(context.WithoutCancel(r.Context()), []inboundResult{res})
}

// okBody is the answer to an update that was handled.
var okBody = []byte(`{"ok":true}`)

// writeOK answers 200 {"ok":true}.
func writeOK(w http.ResponseWriter) { writeJSONBytes(w, http.StatusOK, okBody) }

// writeJSON answers with a JSON body.
func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	writeJSONBytes(w, status, data)
}

// writeJSONBytes answers with an encoded JSON body. Content-Length lets
// net/http send the answer in one write, not chunked.
func writeJSONBytes(w http.ResponseWriter, status int, data []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(status)
	_, _ = w.Write(data)
}

// writeJSONError answers {"error": msg}.
func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// inboundStats counts updates as they arrive, by webhook or poll.
type inboundStats struct {
	received atomic.Uint64
	ignored  atomic.Uint64
	failed   atomic.Uint64
}

// InboundStats returns the inbound counters, for metrics. Failed counts
// updates refused as malformed (webhook: 400) and updates skipped because
// they cannot be mapped.
func (c *Connector) InboundStats() connectors.InboundStats {
	return connectors.InboundStats{
		Received: c.stats.received.Load(),
		Ignored:  c.stats.ignored.Load(),
		Failed:   c.stats.failed.Load(),
	}
}
