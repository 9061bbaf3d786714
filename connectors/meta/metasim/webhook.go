package metasim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/parley-gateway/parley/connectors/meta"
	"github.com/parley-gateway/parley/connectors/simkit"
)

// DefaultRetries is the push retry schedule when Options.Retries is nil:
// short enough for tests and the demo, where Meta retries for hours.
var DefaultRetries = []time.Duration{
	50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond,
}

// AppID is the app id the simulator's echoes carry for messages sent
// through its Send API.
const AppID = "1517776481860111"

func (s *Server) newPusher() *simkit.Pusher {
	retries := s.opts.Retries
	if retries == nil {
		retries = DefaultRetries
	}
	return simkit.NewPusher(simkit.PusherOptions{
		Client:  s.opts.PushClient,
		Retries: retries,
		Sign: func(r *http.Request, body []byte) {
			r.Header.Set(meta.SignatureHeader, meta.SignatureValue([]byte(s.opts.AppSecret), body))
		},
	})
}

// Attach sets the callback URL pushes go to (the connector's webhook).
func (s *Server) Attach(callbackURL string) { s.pusher.SetURL(callbackURL) }

// object is the envelope object of the simulated product.
func (s *Server) object() string {
	if s.opts.Product == Instagram {
		return meta.ObjectInstagram
	}
	return meta.ObjectPage
}

// Body is the signed webhook body of entries, as Meta batches them.
func (s *Server) Body(entries ...meta.Entry) ([]byte, error) {
	for i := range entries {
		if entries[i].Time == 0 {
			entries[i].Time = s.now().UnixMilli()
		}
	}
	b, err := json.Marshal(meta.Envelope{Object: s.object(), Entry: entries})
	if err != nil {
		return nil, fmt.Errorf("metasim: encoding a webhook body: %w", err)
	}
	return b, nil
}

// Push delivers entries in one signed body, retried on the schedule until
// a 200, and returns once acknowledged or given up. A customer's message
// in it opens the conversation's window on the Send API.
func (s *Server) Push(ctx context.Context, entries ...meta.Entry) (simkit.Outcome, error) {
	body, err := s.Body(entries...)
	if err != nil {
		return simkit.Outcome{}, err
	}
	for _, e := range entries {
		for _, m := range e.Messaging {
			if k := m.Kind(); k == meta.KindMessage || k == meta.KindPostback {
				s.Inbound(e.ID, m.Sender.ID, time.UnixMilli(m.Timestamp))
			}
		}
	}
	return s.pusher.Push(ctx, simkit.Push{Body: body})
}

// Forged delivers entries once, signed with another secret: the connector
// must answer 401 and store nothing.
func (s *Server) Forged(ctx context.Context, entries ...meta.Entry) (simkit.Outcome, error) {
	body, err := s.Body(entries...)
	if err != nil {
		return simkit.Outcome{}, err
	}
	return s.pusher.Push(ctx, simkit.Push{Body: body, Once: true, Sign: func(r *http.Request, b []byte) {
		r.Header.Set(meta.SignatureHeader, meta.SignatureValue([]byte("not-"+s.opts.AppSecret), b))
	}})
}

// Text is a customer's text message to account, with a fresh mid.
func (s *Server) Text(account, user, text string) meta.Entry {
	return s.entry(account, meta.Messaging{
		Sender: meta.Party{ID: user}, Recipient: meta.Party{ID: account},
		Message: &meta.Message{MID: s.mid(), Text: text},
	})
}

func (s *Server) entry(account string, m meta.Messaging) meta.Entry {
	now := s.now().UnixMilli()
	if m.Timestamp == 0 {
		m.Timestamp = now
	}
	return meta.Entry{ID: account, Time: now, Messaging: []meta.Messaging{m}}
}

func (s *Server) mid() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next++
	return fmt.Sprintf("m_sim%06d", s.next)
}

// echo pushes the echo of a message the Send API accepted, as Meta does
// for every message a Page sends (message_echoes).
func (s *Server) echo(account string, sent Sent) {
	if !s.opts.Echoes || s.pusher.URL() == "" {
		return
	}
	m := meta.Messaging{
		Sender: meta.Party{ID: account}, Recipient: meta.Party{ID: sent.Recipient}, Timestamp: sent.Time.UnixMilli(),
		Message: &meta.Message{MID: sent.MID, IsEcho: true, AppID: json.Number(AppID), Metadata: sent.Request.Message.Metadata, Text: sent.Request.Message.Text},
	}
	body, err := s.Body(meta.Entry{ID: account, Messaging: []meta.Messaging{m}})
	if err == nil {
		s.pusher.Send(simkit.Push{Body: body})
	}
}

// Handshake makes Meta's subscription check against callbackURL: a GET
// with hub.mode=subscribe, the verify token and a challenge. It returns
// the answer's status and whether its body was the challenge.
func Handshake(ctx context.Context, client *http.Client, callbackURL, verifyToken string) (status int, echoed bool, err error) {
	challenge := strconv.FormatInt(time.Now().UnixNano(), 10)
	q := url.Values{"hub.mode": {"subscribe"}, "hub.verify_token": {verifyToken}, "hub.challenge": {challenge}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, callbackURL+"?"+q.Encode(), nil)
	if err != nil {
		return 0, false, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, string(b) == challenge, nil
}
