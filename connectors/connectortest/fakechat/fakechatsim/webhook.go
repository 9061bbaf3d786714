package fakechatsim

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/parley-gateway/parley/connectors/simkit"
)

// SignatureHeader carries a push's signature.
const SignatureHeader = "X-Fakechat-Signature"

// Signature is the X-Fakechat-Signature of body under secret.
func Signature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (s *Server) signRequest(r *http.Request, body []byte) {
	r.Header.Set(SignatureHeader, Signature(s.opts.AppSecret, body))
}

// Attach sets the webhook URL pushes go to (the connector's
// /webhooks/{id}).
func (s *Server) Attach(webhookURL string) { s.pusher.SetURL(webhookURL) }

// Body is the webhook body of entries, each entry's time filled when 0.
// It fails only for a value JSON cannot carry (a NaN location).
func (s *Server) Body(entries ...Entry) ([]byte, error) {
	for i := range entries {
		if entries[i].Time == 0 {
			entries[i].Time = s.stamp()
		}
		if entries[i].Events == nil {
			entries[i].Events = []Event{}
		}
	}
	b, err := json.Marshal(map[string]any{"object": "fakechat", "entry": entries})
	if err != nil {
		return nil, fmt.Errorf("encoding a fakechat webhook body: %w", err)
	}
	return b, nil
}

// Push delivers events of account in one body, signed, retried on the
// schedule, and returns once acknowledged (nil) or given up.
func (s *Server) Push(ctx context.Context, account string, events ...Event) (simkit.Outcome, error) {
	return s.PushBatch(ctx, Entry{Account: account, Events: events})
}

// PushBatch delivers several entries (for several accounts) in one body.
func (s *Server) PushBatch(ctx context.Context, entries ...Entry) (simkit.Outcome, error) {
	body, err := s.Body(entries...)
	if err != nil {
		return simkit.Outcome{}, err
	}
	s.learn(entries)
	return s.pusher.Push(ctx, simkit.Push{Body: body})
}

// PushAsync queues events of account and returns at once; pushes are
// delivered in the order queued.
func (s *Server) PushAsync(account string, events ...Event) (*simkit.Delivery, error) {
	entries := []Entry{{Account: account, Events: events}}
	body, err := s.Body(entries...)
	if err != nil {
		return nil, err
	}
	s.learn(entries)
	return s.pusher.Send(simkit.Push{Body: body}), nil
}

// PushBody delivers body as it is, signed and retried.
func (s *Server) PushBody(ctx context.Context, body []byte) (simkit.Outcome, error) {
	return s.pusher.Push(ctx, simkit.Push{Body: body})
}

// Redeliver delivers the last pushed body again, byte for byte, as
// fakechat does after an answer it did not get.
func (s *Server) Redeliver(ctx context.Context) (simkit.Outcome, error) {
	last, ok := s.pusher.Last()
	if !ok {
		return simkit.Outcome{}, errors.New("nothing was pushed yet")
	}
	return s.pusher.Push(ctx, simkit.Push{Body: last.Body})
}

// PushForged delivers events signed with another secret, once, as a forger
// would; the connector must answer 401.
func (s *Server) PushForged(ctx context.Context, account string, events ...Event) (simkit.Outcome, error) {
	forged := func(r *http.Request, body []byte) {
		r.Header.Set(SignatureHeader, Signature("not-"+s.opts.AppSecret, body))
	}
	body, err := s.Body(Entry{Account: account, Events: events})
	if err != nil {
		return simkit.Outcome{}, err
	}
	return s.pusher.Push(ctx, simkit.Push{Body: body, Sign: forged, Once: true})
}

// PushMalformed delivers a correctly signed body that is not JSON, once;
// the connector must answer 400.
func (s *Server) PushMalformed(ctx context.Context) (simkit.Outcome, error) {
	return s.pusher.Push(ctx, simkit.Push{Body: []byte(`{"object":"fakechat","entry":[{"account":`), Once: true})
}

// Acked counts the pushes the webhook acknowledged with a 2xx.
func (s *Server) Acked() int { return s.pusher.Acked() }

// Attempts returns every push attempt, in order.
func (s *Server) Attempts() []simkit.Attempt { return s.pusher.Attempts() }

// FlushPushes waits until every queued push is acknowledged or given up.
func (s *Server) FlushPushes(ctx context.Context) error { return s.pusher.Flush(ctx) }

// Handshake makes the verification GET fakechat's console makes when a
// webhook URL is set, and returns the answer's status and body.
func (s *Server) Handshake(ctx context.Context, verifyToken, challenge string) (int, string, error) {
	target, err := url.Parse(s.pusher.URL())
	if err != nil || target.Host == "" {
		return 0, "", errors.New("no webhook URL: call Attach first")
	}
	q := target.Query()
	q.Set("mode", "subscribe")
	q.Set("verify_token", verifyToken)
	q.Set("challenge", challenge)
	target.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return 0, "", err
	}
	client := s.opts.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("fakechat handshake: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body), err
}

// learn makes the customers of pushed events known to their accounts.
func (s *Server) learn(entries []Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range entries {
		for _, ev := range e.Events {
			if ev.From != nil && ev.Type != "status" {
				s.known[e.Account+"\x00"+ev.From.ID] = true
			}
			if ev.To != nil {
				s.known[e.Account+"\x00"+ev.To.ID] = true
			}
		}
	}
}
