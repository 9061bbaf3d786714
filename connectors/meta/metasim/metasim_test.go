package metasim

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/meta"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/normalize"
)

func newSim(t *testing.T, opts Options) (*Server, *meta.Client) {
	t.Helper()
	if opts.Accounts == nil {
		opts.Accounts = []Account{{ID: "1001", Token: "tok-1001"}, {ID: "1002", Token: "tok-1002"}}
	}
	opts.AppSecret = "secret"
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, &meta.Client{BaseURL: s.URL, Version: "v25.0", AppSecret: "secret", HTTP: &http.Client{Timeout: 5 * time.Second}}
}

func text(to, body string) *meta.SendRequest {
	return &meta.SendRequest{Recipient: meta.Party{ID: to}, MessagingType: meta.MessagingResponse, Message: &meta.OutMessage{Text: body}}
}

// The simulator refuses exactly what the Send API refuses, with Meta's
// error bodies, and the client classifies each as the outbox needs.
func TestSendAPIRules(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, c := newSim(t, Options{Now: clock, RateLimit: &simkit.Limit{}})
	ctx := context.Background()
	s.Inbound("1001", "psid-recent", now.Add(-time.Hour))
	s.Inbound("1001", "psid-old", now.Add(-48*time.Hour))
	s.Inbound("1001", "psid-blocked", now.Add(-time.Hour))
	s.Block("1001", "psid-blocked")

	res, err := c.Send(ctx, "1001", "tok-1001", text("psid-recent", "hello"))
	if err != nil || !strings.HasPrefix(res.MessageID, "m_") {
		t.Fatalf("a reply inside the window: %+v, %v", res, err)
	}
	tests := []struct {
		name    string
		account string
		token   string
		req     *meta.SendRequest
		code    normalize.ErrorCode
	}{
		{"outside the 24-hour window", "1001", "tok-1001", text("psid-old", "late"), normalize.ErrWindowClosed},
		{"blocked customer", "1001", "tok-1001", text("psid-blocked", "hi"), normalize.ErrRecipientUnavailable},
		{"unknown customer", "1001", "tok-1001", text("psid-never", "hi"), normalize.ErrRecipientUnavailable},
		{"another page's token", "1001", "tok-1002", text("psid-recent", "hi"), normalize.ErrUnauthorized},
		{"text over 2,000 characters", "1001", "tok-1001", text("psid-recent", strings.Repeat("é", 2001)), normalize.ErrInvalidReply},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Send(ctx, tt.account, tt.token, tt.req)
			if ce := connectors.Classify(err); err == nil || ce.Code != tt.code {
				t.Errorf("Send = %v, want %s", err, tt.code)
			}
		})
	}
	// The human-agent tag extends the window to 7 days.
	tagged := text("psid-old", "a human answers")
	tagged.MessagingType, tagged.Tag = meta.MessagingMessageTag, meta.TagHumanAgent
	if _, err := c.Send(ctx, "1001", "tok-1001", tagged); err != nil {
		t.Errorf("HUMAN_AGENT within 7 days: %v", err)
	}
	if n := len(s.Sent()); n != 2 {
		t.Errorf("%d messages accepted, want 2", n)
	}
}

func TestRateLimitIsPerAccountAndAccountWide(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	s, c := newSim(t, Options{Now: func() time.Time { return now }, RateLimit: &simkit.Limit{PerSecond: 1, Burst: 2}})
	ctx := context.Background()
	for _, a := range []string{"1001", "1002"} {
		s.Inbound(a, "u", now)
	}
	for i := range 2 {
		if _, err := c.Send(ctx, "1001", "tok-1001", text("u", "burst")); err != nil {
			t.Fatalf("send %d within the burst: %v", i, err)
		}
	}
	_, err := c.Send(ctx, "1001", "tok-1001", text("u", "one too many"))
	ce := connectors.Classify(err)
	if ce.Class != connectors.ClassRetryAfter || ce.Scope != connectors.ScopeAccount || ce.PlatformCode != "613" || ce.RetryAfter <= 0 {
		t.Errorf("over the limit: %v (class %s scope %s code %q wait %s), want an account-wide retry-after 613", err, ce.Class, ce.Scope, ce.PlatformCode, ce.RetryAfter)
	}
	if _, err := c.Send(ctx, "1002", "tok-1002", text("u", "another page")); err != nil {
		t.Errorf("another page is not limited by the first's budget: %v", err)
	}
}

func TestInstagramLimitsAreInBytesAndItsOwnCodes(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	s, c := newSim(t, Options{Product: Instagram, Now: func() time.Time { return now }})
	s.Inbound("1001", "igsid", now.Add(-25*time.Hour))
	s.Inbound("1001", "igsid-2", now)
	_, err := c.Send(context.Background(), "1001", "tok-1001", text("igsid", "late"))
	if ce := connectors.Classify(err); ce.Code != normalize.ErrWindowClosed || ce.PlatformCode != "10/2534022" {
		t.Errorf("outside the window: %v", err)
	}
	// 400 emoji of 4 bytes: 400 characters, 1,600 bytes.
	_, err = c.Send(context.Background(), "1001", "tok-1001", text("igsid-2", strings.Repeat("😀", 400)))
	if ce := connectors.Classify(err); ce.Code != normalize.ErrInvalidReply {
		t.Errorf("1,600 bytes of text: %v, want the 1,000-byte limit", err)
	}
}

func TestAProofFromAnotherSecretIsRefused(t *testing.T) {
	s, _ := newSim(t, Options{})
	s.Inbound("1001", "u", time.Now())
	c := &meta.Client{BaseURL: s.URL, Version: "v25.0", AppSecret: "not-the-secret", HTTP: &http.Client{Timeout: 5 * time.Second}}
	_, err := c.Send(context.Background(), "1001", "tok-1001", text("u", "hi"))
	if ce := connectors.Classify(err); err == nil || ce.Class != connectors.ClassPermanent || ce.PlatformCode != "100" {
		t.Errorf("a wrong appsecret_proof: %v, want permanent 100", err)
	}
}
