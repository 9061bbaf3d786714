package telegramsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"syscall"
	"time"

	"github.com/go-telegram/bot/models"
)

// SecretTokenHeader carries setWebhook's secret_token on every webhook delivery.
const SecretTokenHeader = "X-Telegram-Bot-Api-Secret-Token"

// webhookState is the configured webhook; cancel stops its delivery goroutine.
type webhookState struct {
	url            string
	secret         string
	maxConnections int
	ipAddress      string
	cancel         context.CancelFunc
}

func validSecretToken(s string) bool {
	if len(s) < 1 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkWebhookURL applies Telegram's rules (HTTPS on ports 443, 80, 88 or 8443) except that any
// http or https URL on a loopback host is accepted, so tests can receive deliveries.
func checkWebhookURL(raw string) *apiError {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return badRequest("Bad Request: bad webhook: Failed to resolve host: Name or service not known")
	}
	if isLoopback(u.Hostname()) && (u.Scheme == "http" || u.Scheme == "https") {
		return nil
	}
	if u.Scheme != "https" {
		return badRequest("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
	}
	switch u.Port() {
	case "", "443", "80", "88", "8443":
		return nil
	}
	return badRequest("Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
}

func (s *Sim) setWebhook(_ context.Context, p *params) (any, *apiError) {
	rawURL := p.str("url")
	if rawURL == "" {
		return s.removeWebhook(p.bool("drop_pending_updates"))
	}
	if aerr := checkWebhookURL(rawURL); aerr != nil {
		return nil, aerr
	}
	secret := p.str("secret_token")
	if p.has("secret_token") && !validSecretToken(secret) {
		return nil, badRequest("Bad Request: bad webhook: secret token contains unallowed characters or is longer than 256 characters")
	}
	maxConn, hasMax, aerr := p.int("max_connections")
	if aerr != nil {
		return nil, aerr
	}
	if !hasMax {
		maxConn = 40
	}
	maxConn = min(max(maxConn, 1), 100)
	allowed, hasAllowed, aerr := allowedParam(p)
	if aerr != nil {
		return nil, aerr
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.setAllowedParamLocked(allowed, hasAllowed)
	if p.bool("drop_pending_updates") {
		s.queue = nil
	}
	if old := s.webhook; old != nil {
		if old.url == rawURL && old.secret == secret && old.maxConnections == maxConn {
			s.notifyLocked()
			return described{true, "Webhook is already set"}, nil
		}
		old.cancel()
	}
	wh := &webhookState{url: rawURL, secret: secret, maxConnections: maxConn, ipAddress: p.str("ip_address")}
	var ctx context.Context
	ctx, wh.cancel = context.WithCancel(s.ctx)
	s.webhook = wh
	s.webhookErrDate, s.webhookErrMsg = 0, ""
	if !s.closed {
		s.pushers.Add(1)
		go s.deliver(ctx, wh)
	}
	s.notifyLocked() // a waiting getUpdates now answers 409
	return described{true, "Webhook was set"}, nil
}

func (s *Sim) deleteWebhook(_ context.Context, p *params) (any, *apiError) {
	return s.removeWebhook(p.bool("drop_pending_updates"))
}

func (s *Sim) removeWebhook(drop bool) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if drop {
		s.queue = nil
	}
	wh := s.webhook
	s.webhook = nil
	s.notifyLocked()
	if wh == nil {
		return described{true, "Webhook is already deleted"}, nil
	}
	wh.cancel()
	s.webhookErrDate, s.webhookErrMsg = 0, ""
	return described{true, "Webhook was deleted"}, nil
}

func (s *Sim) getWebhookInfo(context.Context, *params) (any, *apiError) {
	info := s.WebhookInfo()
	return &info, nil
}

// WebhookInfo returns what getWebhookInfo would answer.
func (s *Sim) WebhookInfo() models.WebhookInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	info := models.WebhookInfo{PendingUpdateCount: len(s.queue), AllowedUpdates: slices.Clone(s.allowed)}
	if wh := s.webhook; wh != nil {
		info.URL = wh.url
		info.MaxConnections = wh.maxConnections
		info.IPAddress = wh.ipAddress
		info.LastErrorDate = int(s.webhookErrDate)
		info.LastErrorMessage = s.webhookErrMsg
	}
	return info
}

// deliver pushes queued updates to one webhook, one POST per update, strictly in order (whatever
// max_connections says). A failed delivery keeps the update at the head of the queue and is retried
// after a doubling back-off. It returns when the webhook is replaced or deleted, or on Close.
func (s *Sim) deliver(ctx context.Context, wh *webhookState) {
	defer s.pushers.Done()
	var (
		backoff  time.Duration
		attempts int
		lastID   int64
	)
	for {
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		s.pruneLocked()
		if len(s.queue) == 0 {
			changed := s.changed
			s.mu.Unlock()
			select {
			case <-changed:
			case <-ctx.Done():
			}
			continue
		}
		u := s.queue[0]
		s.mu.Unlock()

		failure := s.post(ctx, wh, u.raw)

		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			return
		}
		if failure == "" {
			s.log.Debug("telegramsim delivered an update to the webhook", "update_id", u.id)
			s.removeUpdateLocked(u.id)
			backoff, attempts = 0, 0
			s.mu.Unlock()
			continue
		}
		if u.id != lastID {
			lastID, attempts = u.id, 0
		}
		attempts++
		s.webhookErrDate, s.webhookErrMsg = s.now().Unix(), failure
		s.log.Debug("telegramsim webhook delivery failed", "update_id", u.id, "attempt", attempts, "error", failure)
		if s.opts.WebhookMaxAttempts > 0 && attempts >= s.opts.WebhookMaxAttempts {
			s.removeUpdateLocked(u.id) // Telegram gives up after a number of attempts
			attempts = 0
		}
		s.mu.Unlock()

		if backoff == 0 {
			backoff = s.opts.WebhookRetryMin
		} else {
			backoff = min(2*backoff, s.opts.WebhookRetryMax)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

func (s *Sim) removeUpdateLocked(id int64) {
	if i := slices.IndexFunc(s.queue, func(u queuedUpdate) bool { return u.id == id }); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
		s.notifyLocked()
	}
}

// post delivers one update. It returns "" on success, else the failure worded like Telegram's
// last_error_message.
func (s *Sim) post(ctx context.Context, wh *webhookState, body []byte) string {
	ctx, cancel := context.WithTimeout(ctx, s.opts.WebhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, wh.url, bytes.NewReader(body))
	if err != nil {
		return "Bad webhook: " + err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	if wh.secret != "" {
		req.Header.Set(SecretTokenHeader, wh.secret)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return "Connection refused"
		case errors.Is(err, context.DeadlineExceeded):
			return "Read timeout expired"
		}
		return "Connection failed: " + err.Error()
	}
	// Telegram ignores the answer's body except for a method call, which the simulator ignores too.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Sprintf("Wrong response from the webhook: %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return ""
}
