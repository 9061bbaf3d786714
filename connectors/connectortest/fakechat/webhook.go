package fakechat

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
)

// SignatureHeader carries the webhook signature: "sha256=" and the hex
// HMAC-SHA256 of the raw body under the app secret.
const SignatureHeader = "X-Fakechat-Signature"

// webhookBudget is how long fakechat waits for an answer. Like Meta, it
// documents a 20-second timeout but asks for an answer within 5 seconds
// and treats a slower one as failed, retrying it later; answering 503
// before then lets the retry come sooner.
const webhookBudget = 5 * time.Second

// newWebhook builds the handler of /webhooks/{id}.
func (c *Connector) newWebhook() *kit.Webhook {
	return &kit.Webhook{
		Budget:    webhookBudget,
		Verify:    c.verify,
		Parse:     func(body []byte) ([]kit.Update, error) { return parseBody(c.inboundContext(), body) },
		Resolve:   c.resolve,
		Handshake: c.handshake,
		Inbound:   c.inbound,
		Log:       c.log,
	}
}

// inboundContext is what the mapping needs to know about this connector;
// the clock is read here, so that the mapping stays pure.
func (c *Connector) inboundContext() inboundContext {
	return inboundContext{
		Region:     c.deps.Region,
		Connector:  c.deps.ID,
		Known:      func(account string) bool { _, ok := c.cfg.tokens[account]; return ok },
		ReceivedAt: c.deps.Now(),
	}
}

// verify checks the signature over the raw body, in constant time.
func (c *Connector) verify(r *http.Request, body []byte) error {
	got, ok := strings.CutPrefix(r.Header.Get(SignatureHeader), "sha256=")
	if !ok {
		return errors.New("no sha256 signature in " + SignatureHeader)
	}
	sig, err := hex.DecodeString(got)
	if err != nil {
		return errors.New("the signature is not hex")
	}
	if !hmac.Equal(sig, sign(c.cfg.appSecret.Reveal(), body)) {
		return errors.New("the signature does not match the app secret")
	}
	return nil
}

// sign is the HMAC-SHA256 of body under secret.
func sign(secret string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return m.Sum(nil)
}

// handshake answers the verification GET fakechat makes when the operator
// sets the webhook URL: ?mode=subscribe&verify_token=<t>&challenge=<c> is
// answered with the raw challenge when the token matches, else 403.
func (c *Connector) handshake(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	// Comparing digests keeps the token's length out of the timing too.
	got := sha256.Sum256([]byte(q.Get("verify_token")))
	want := sha256.Sum256([]byte(c.cfg.verifyToken.Reveal()))
	if q.Get("mode") != "subscribe" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		c.log.Warn("refusing a webhook handshake with a wrong verify token", "remote_addr", r.RemoteAddr)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	challenge := q.Get("challenge")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(challenge)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(challenge))
}

// resolve completes updates with what the reply ledger knows, before they
// are stored. A ledger error answers 503: fakechat retries, and the lookups
// run again.
func (c *Connector) resolve(ctx context.Context, updates []kit.Update) error {
	for i := range updates {
		u := &updates[i]
		f, ok := u.Data.(*followUp)
		if !ok || u.Err != nil {
			continue
		}
		if err := c.resolveOne(ctx, u, f); err != nil {
			return err
		}
	}
	return nil
}

func (c *Connector) resolveOne(ctx context.Context, u *kit.Update, f *followUp) error {
	ledger := c.deps.Ledger
	switch f.kind {
	case lookupSent:
		var replies []string
		for _, id := range f.ids {
			m, found, err := c.sent(ctx, id)
			if err != nil {
				return err
			}
			if found && !slices.Contains(replies, m.ReplyID) {
				replies = append(replies, m.ReplyID)
			}
		}
		setReplies(u, replies)

	case lookupSentUntil:
		sent, err := ledger.SentUntil(ctx, f.conv, f.watermark)
		if err != nil {
			return fmt.Errorf("listing replies up to a fakechat read watermark: %w", err)
		}
		var replies []string
		for _, m := range sent {
			if !slices.Contains(replies, m.ReplyID) {
				replies = append(replies, m.ReplyID)
			}
		}
		setReplies(u, replies)

	case lookupEcho:
		_, found, err := c.sent(ctx, f.id)
		if err != nil {
			return err
		}
		if found {
			u.Events, u.Ignored = nil, ignoredOwnEcho
		}

	case lookupFailure:
		m, found, err := c.sent(ctx, f.id)
		if err != nil {
			return err
		}
		if !found {
			u.Ignored = ignoredUnknownSend
			return nil
		}
		if err := ledger.ReportLateFailure(ctx, m, f.failure); err != nil {
			return fmt.Errorf("reporting the late failure of fakechat message %s: %w", f.id, err)
		}
		u.Ignored = ignoredLateFailure
	}
	return nil
}

// sent looks a platform message id up in the ledger; found is false when
// Parley did not send it.
func (c *Connector) sent(ctx context.Context, id string) (m connectors.SentMessage, found bool, err error) {
	m, err = c.deps.Ledger.Sent(ctx, id)
	switch {
	case err == nil:
		return m, true, nil
	case errors.Is(err, connectors.ErrNotFound):
		return m, false, nil
	}
	return m, false, fmt.Errorf("looking up fakechat message %s in the reply ledger: %w", id, err)
}

// setReplies names the replies a receipt covers.
func setReplies(u *kit.Update, replies []string) {
	if replies == nil {
		replies = []string{}
	}
	for _, e := range u.Events {
		if e.Data.Receipt != nil {
			e.Data.Receipt.ReplyIDs = replies
		}
	}
}
