package telegram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

// offsetKey is the cursor key of the next update_id to ask for.
const offsetKey = "telegram.offset"

// pollLimit is the most updates one getUpdates returns (the Bot API's cap).
const pollLimit = 100

// pollGrace is added to the long-poll timeout for the request's own
// deadline: Telegram answers at the timeout, so only a hung connection
// reaches it.
const pollGrace = 15 * time.Second

// maxPollBody bounds a getUpdates answer: 100 updates of a few KB each.
const maxPollBody = 32 << 20

// runPolling is the getUpdates loop. Its invariant: an update is confirmed
// to Telegram (by asking for a higher offset) and the cursor saved only
// after every event of its batch is durable. Telegram keeps unconfirmed
// updates, and a batch asked for again maps to the same event ids, which
// JetStream deduplicates.
func (c *Connector) runPolling(ctx context.Context) error {
	offset, ok := c.loadOffset(ctx)
	if !ok {
		return nil
	}
	bo := kit.NewBackOff(c.retry.initial, c.retry.max)
	// The first poll, and the first after a failure, does not wait for
	// updates: its answer tells at once whether Telegram is reachable.
	short := true
	for {
		raws, err := c.getUpdates(ctx, offset, short)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			wait, fatal := c.pollFailed(err, bo)
			if fatal != nil {
				return fatal
			}
			if !kit.Sleep(ctx, wait) {
				return nil
			}
			short = true
			continue
		}
		bo.Reset()
		short = false
		c.health.Platform(nil)
		c.health.Started()
		if len(raws) == 0 {
			continue
		}
		next, ok := c.deliverBatch(ctx, offset, raws)
		if !ok {
			return nil
		}
		if next <= offset && !kit.Sleep(ctx, bo.NextBackOff()) {
			// No update_id could be read: asking again at once would spin.
			return nil
		}
		offset = max(offset, next)
	}
}

// pollFailed reports a failed getUpdates in health and says how long to wait
// before the next one, or returns the error that ends Run.
func (c *Connector) pollFailed(err error, bo backoff.BackOff) (time.Duration, error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		c.health.Platform(&kit.Problem{Reason: "telegram is unreachable: " + err.Error(), Action: actionUnreachable})
		c.log.Warn("polling telegram", "error", err)
		return bo.NextBackOff(), nil
	}
	switch code := ae.code(); {
	case code == http.StatusUnauthorized || code == http.StatusNotFound:
		c.log.Error("telegram rejected the bot token", "error", err)
		return 0, c.health.Fatal(normalize.StateBadCredentials, "telegram rejected the bot token ("+ae.platformCode()+")", actionBadToken,
			fmt.Errorf("polling telegram: %w", connectors.Permanent(normalize.ErrUnauthorized, ae.platformCode(), err)))
	case code == http.StatusConflict && strings.Contains(strings.ToLower(ae.Description), "webhook"):
		// Deleting the webhook would silently take updates away from
		// whoever set it: an operator decides.
		c.health.Platform(&kit.Problem{Reason: "a webhook is set for this bot, so telegram refuses to be polled", Action: actionWebhookIsSet})
		c.log.Warn("polling telegram: a webhook is set", "error", err)
		return max(bo.NextBackOff(), c.retry.slow), nil
	case code == http.StatusConflict:
		c.health.Platform(&kit.Problem{Reason: "another poller is using this token", Action: actionOtherPoller})
		c.log.Warn("polling telegram: another poller is using this token", "error", err)
		return bo.NextBackOff(), nil
	case code == http.StatusTooManyRequests && ae.RetryAfter > 0:
		c.health.Platform(&kit.Problem{Reason: "telegram asked to slow down: " + err.Error()})
		c.log.Warn("polling telegram", "error", err, "retry_after", ae.RetryAfter)
		return time.Duration(ae.RetryAfter) * time.Second, nil
	default:
		c.health.Platform(&kit.Problem{Reason: "polling telegram: " + err.Error(), Action: actionUnreachable})
		c.log.Warn("polling telegram", "error", err)
		return bo.NextBackOff(), nil
	}
}

// deliverBatch maps, stores and then acknowledges one batch. It returns the
// next offset, or false when ctx ended before the batch was stored. An
// update that cannot be mapped, or whose events the server refuses, is
// dead-lettered by the store step: skipping it is the only way on, since
// Telegram would return it for ever.
func (c *Connector) deliverBatch(ctx context.Context, offset int64, raws []json.RawMessage) (int64, bool) {
	ic := c.inboundContext()
	next := offset
	updates := make([]kit.Update, 0, len(raws))
	for _, raw := range raws {
		id, u := c.mapRaw(ic, raw)
		if id >= next {
			next = id + 1
		}
		updates = append(updates, u)
	}

	bo := kit.NewBackOff(c.retry.initial, c.retry.max)
	for {
		err := c.inbound.Store(ctx, updates)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return 0, false
		}
		c.log.Warn("storing a batch of telegram updates", "updates", len(updates), "error", err)
		if !kit.Sleep(ctx, bo.NextBackOff()) {
			return 0, false
		}
	}
	c.log.Debug("stored a batch of telegram updates", "updates", len(raws), "next_offset", next)

	if next > offset {
		if err := c.deps.Cursors.Put(ctx, offsetKey, []byte(strconv.FormatInt(next, 10))); err != nil {
			// The events are durable and the next getUpdates confirms the
			// batch to Telegram anyway; a restart before the cursor is
			// saved again only re-reads updates that are deduplicated.
			c.log.Warn("saving the telegram offset", "offset", next, "error", err)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, followUpTimeout)
	defer cancel()
	c.afterStored(fctx, updates)
	return next, true
}

// mapRaw parses and maps one update of a batch. id is the update's
// update_id when it can be read, even if the update cannot be mapped.
func (c *Connector) mapRaw(ic inboundContext, raw json.RawMessage) (int64, kit.Update) {
	var head struct {
		UpdateID int64 `json:"update_id"`
	}
	_ = json.Unmarshal(raw, &head) // a broken update fails parseUpdate below
	u, err := parseUpdate(raw)
	out := c.toUpdate(ic, raw, u, err)
	if u == nil {
		out.ID = strconv.FormatInt(head.UpdateID, 10)
		return head.UpdateID, out
	}
	return u.ID, out
}

// loadOffset reads the saved offset, retrying while the store is
// unavailable; false means ctx ended first.
func (c *Connector) loadOffset(ctx context.Context) (int64, bool) {
	bo := kit.NewBackOff(c.retry.initial, c.retry.max)
	for {
		b, err := c.deps.Cursors.Get(ctx, offsetKey)
		switch {
		case errors.Is(err, connectors.ErrNotFound):
			return 0, true
		case err == nil:
			off, perr := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			if perr != nil || off < 0 {
				// Offset 0 asks for every unconfirmed update: at worst
				// some are stored again and deduplicated.
				c.log.Warn("ignoring an unreadable telegram offset", "value", string(b))
				return 0, true
			}
			return off, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
		c.health.Storage(&kit.Problem{Reason: "the poll offset cannot be read: " + err.Error(), Action: actionStorage})
		c.log.Warn("reading the telegram offset", "error", err)
		if !kit.Sleep(ctx, bo.NextBackOff()) {
			return 0, false
		}
	}
}

// getUpdatesRequest is the body of a getUpdates call.
type getUpdatesRequest struct {
	Offset         int64    `json:"offset,omitempty"`
	Limit          int      `json:"limit"`
	Timeout        int      `json:"timeout"`
	AllowedUpdates []string `json:"allowed_updates"`
}

// envelope is a Bot API answer; updates stay raw so that one that fails to
// decode does not take the batch with it.
type envelope struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

// getUpdates makes one getUpdates call. It is Parley's own rather than the
// SDK's, whose poller confirms updates before they are handled.
func (c *Connector) getUpdates(ctx context.Context, offset int64, short bool) ([]json.RawMessage, error) {
	timeout := c.cfg.pollTimeout
	if short {
		timeout = 0
	}
	body, err := json.Marshal(getUpdatesRequest{
		Offset:         offset,
		Limit:          pollLimit,
		Timeout:        int(timeout / time.Second),
		AllowedUpdates: c.cfg.allowedUpdates,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding getUpdates: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout+pollGrace)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.methodURL("getUpdates"), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building getUpdates request: %w", scrubURL(err, c.cfg.token))
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.pollClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling getUpdates: %w", scrubURL(err, c.cfg.token))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxPollBody))
	if err != nil {
		return nil, fmt.Errorf("reading getUpdates answer: %w", scrubURL(err, c.cfg.token))
	}
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, &apiError{Method: "getUpdates", Status: resp.StatusCode, Description: "answer is not Bot API JSON"}
	}
	if !env.OK {
		return nil, &apiError{Method: "getUpdates", Status: resp.StatusCode, Code: env.ErrorCode,
			Description: env.Description, RetryAfter: env.Parameters.RetryAfter}
	}
	var raws []json.RawMessage
	if len(env.Result) > 0 {
		if err := json.Unmarshal(env.Result, &raws); err != nil {
			return nil, &apiError{Method: "getUpdates", Status: resp.StatusCode, Description: "result is not a list of updates"}
		}
	}
	return raws, nil
}

// methodURL is the URL of a Bot API method. It holds the token: never log
// it or put it in an error.
func (c *Connector) methodURL(method string) string {
	return c.cfg.apiURL + "/bot" + string(c.cfg.token) + "/" + method
}
