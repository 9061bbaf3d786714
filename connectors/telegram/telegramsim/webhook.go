package telegramsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors/simkit"
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
// max_connections says), through a pusher that backs off the endpoint as Telegram does: a failed
// delivery keeps the update at the head of the queue, and the next attempt, of that update or of the
// one after it once it is dropped or given up, waits a back-off that doubles while the endpoint
// fails. It returns when the webhook is replaced or deleted, or on Close.
func (s *Sim) deliver(ctx context.Context, wh *webhookState) {
	defer s.pushers.Done()
	var current atomic.Int64 // the update being delivered, for the log
	pusher := simkit.NewPusher(simkit.PusherOptions{
		Client: s.opts.WebhookClient,
		Sign: func(r *http.Request, _ []byte) {
			if wh.secret != "" {
				r.Header.Set(SecretTokenHeader, wh.secret)
			}
		},
		Backoff:     simkit.Doubling(s.opts.WebhookRetryMin, s.opts.WebhookRetryMax),
		MaxAttempts: s.opts.WebhookMaxAttempts,
		Timeout:     s.opts.WebhookTimeout,
		Now:         s.now,
		OnAttempt:   func(a simkit.Attempt) { s.reportAttempt(ctx, current.Load(), a) },
	})
	defer pusher.Close()
	pusher.SetURL(wh.url)
	for {
		u, ok := s.nextUpdate(ctx)
		if !ok {
			return
		}
		current.Store(u.id)
		_, err := pusher.Push(ctx, simkit.Push{Body: u.raw, Wanted: func() bool { return s.atHead(u.id) }})
		switch {
		case err == nil:
			s.log.Debug("telegramsim delivered an update to the webhook", "update_id", u.id)
		case errors.Is(err, simkit.ErrNotAcked):
			// Telegram gives up after a number of attempts.
		default:
			continue // the update left the queue meanwhile, or ctx ended
		}
		s.mu.Lock()
		s.removeUpdateLocked(u.id)
		s.mu.Unlock()
	}
}

// nextUpdate waits for an update at the head of the queue; false once ctx ends.
func (s *Sim) nextUpdate(ctx context.Context) (queuedUpdate, bool) {
	for {
		s.mu.Lock()
		s.pruneLocked()
		if ctx.Err() != nil {
			s.mu.Unlock()
			return queuedUpdate{}, false
		}
		if len(s.queue) > 0 {
			u := s.queue[0]
			s.mu.Unlock()
			return u, true
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
		}
	}
}

// atHead reports whether update id is still the next to deliver: drop_pending_updates or a narrower
// allowed_updates may have removed it while it was being retried.
func (s *Sim) atHead(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked()
	return len(s.queue) > 0 && s.queue[0].id == id
}

func (s *Sim) removeUpdateLocked(id int64) {
	if i := slices.IndexFunc(s.queue, func(u queuedUpdate) bool { return u.id == id }); i >= 0 {
		s.queue = slices.Delete(s.queue, i, i+1)
		s.notifyLocked()
	}
}

// reportAttempt keeps a failed delivery of update id for getWebhookInfo's last_error_*, unless the
// webhook is gone (ctx ended) and its errors with it.
func (s *Sim) reportAttempt(ctx context.Context, id int64, a simkit.Attempt) {
	if a.Err == nil && a.Status >= 200 && a.Status <= 299 {
		return
	}
	failure := lastErrorMessage(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	s.webhookErrDate, s.webhookErrMsg = s.now().Unix(), failure
	s.log.Debug("telegramsim webhook delivery failed", "update_id", id, "attempt", a.Try, "error", failure)
}

// lastErrorMessage words a failed delivery as Telegram's last_error_message does. Telegram ignores
// the answer's body except for a method call, which the simulator ignores too.
func lastErrorMessage(a simkit.Attempt) string {
	switch {
	case a.Err == nil:
		return fmt.Sprintf("Wrong response from the webhook: %d %s", a.Status, http.StatusText(a.Status))
	case errors.Is(a.Err, syscall.ECONNREFUSED):
		return "Connection refused"
	case errors.Is(a.Err, context.DeadlineExceeded):
		return "Read timeout expired"
	}
	return "Connection failed: " + a.Err.Error()
}
