// Package metasim simulates the Graph API's Send API for Messenger and
// Instagram, for tests and `parley demo`: accounts (Pages, Instagram
// professional accounts) with their own tokens, appsecret_proof checked,
// the 24-hour window (7 days with the HUMAN_AGENT tag), blocked customers,
// text limits, per-account rate limiting, and Meta's error bodies for each
// refusal ({"error":{"message","type","code","error_subcode","fbtrace_id"}}).
// It also pushes signed webhooks (batched entries, retried until a 200,
// forged ones), echoes of what it accepted, and makes the subscription
// handshake.
package metasim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parley-gateway/parley/connectors/meta"
	"github.com/parley-gateway/parley/connectors/simkit"
)

// Products, as the text limit and the rate-limit error differ.
const (
	Messenger = "messenger"
	Instagram = "instagram"
)

// DocumentedLimit is the Send API's limit per account for text: 300 calls a
// second.
var DocumentedLimit = simkit.Limit{PerSecond: 300, Burst: 300}

// Account is one Page or Instagram account of the app.
type Account struct {
	ID    string
	Token string
}

// Options configures a Server.
type Options struct {
	Product   string // Messenger (default) or Instagram
	Version   string // the Graph version in paths; default "v25.0"
	AppSecret string // appsecret_proof is required when set
	Accounts  []Account
	// RateLimit per account; nil means DocumentedLimit, &simkit.Limit{} none.
	RateLimit *simkit.Limit
	// Now is the clock of windows and limits; default time.Now.
	Now func() time.Time
	// Echoes pushes the echo of every accepted message, as Meta does.
	Echoes bool
	// Retries is the push retry schedule; nil means DefaultRetries.
	Retries []time.Duration
	// PushClient delivers pushes; nil: the pusher's own.
	PushClient *http.Client
}

// Sent is one message the simulator accepted.
type Sent struct {
	Account   string
	Recipient string
	MID       string
	Request   meta.SendRequest
	Time      time.Time
}

// Server is a Send API simulator on 127.0.0.1.
type Server struct {
	URL string

	opts    Options
	now     func() time.Time
	limiter *simkit.Limiter
	srv     *http.Server
	ln      net.Listener
	pusher  *simkit.Pusher

	mu       sync.Mutex
	tokens   map[string]string    // account → token
	inbound  map[string]time.Time // account/user → last message from the user
	blocked  map[string]bool      // account/user
	sent     []Sent
	next     int
	failures simkit.Failures
}

// NewServer starts a simulator; Close stops it.
func NewServer(opts Options) (*Server, error) {
	if opts.Product == "" {
		opts.Product = Messenger
	}
	if opts.Version == "" {
		opts.Version = "v25.0"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	limit := DocumentedLimit
	if opts.RateLimit != nil {
		limit = *opts.RateLimit
	}
	s := &Server{opts: opts, now: opts.Now, limiter: simkit.NewLimiter(limit),
		tokens: map[string]string{}, inbound: map[string]time.Time{}, blocked: map[string]bool{}}
	for _, a := range opts.Accounts {
		s.tokens[a.ID] = a.Token
	}
	s.pusher = s.newPusher()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("metasim: listening: %w", err)
	}
	s.ln = ln
	s.URL = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	s.pusher.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// Inbound records that user wrote to account at t: it opens the window.
func (s *Server) Inbound(account, user string, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inbound[account+"/"+user] = t
}

// Block makes user unreachable from account (551 / 1545041).
func (s *Server) Block(account, user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked[account+"/"+user] = true
}

// FailNext answers the next n sends of account with f.
func (s *Server) FailNext(account string, n int, f simkit.Failure) {
	s.failures.FailNext(account, n, f)
}

// Sent returns every accepted message, in order.
func (s *Server) Sent() []Sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sent(nil), s.sent...)
}

// graphError writes Meta's error body with HTTP status.
func graphError(w http.ResponseWriter, status int, code, subcode int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	e := map[string]any{"message": msg, "type": typ, "code": code, "fbtrace_id": "AsimTrace"}
	if subcode != 0 {
		e["error_subcode"] = subcode
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"error": e})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	account, ok := s.route(r.URL.Path)
	if !ok || r.Method != http.MethodPost {
		graphError(w, http.StatusBadRequest, 100, 0, "GraphMethodException", "Unsupported post request.")
		return
	}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	want, known := s.tokens[account]
	s.mu.Unlock()
	if !known || token == "" || token != want {
		graphError(w, http.StatusBadRequest, 190, 467, "OAuthException", "Invalid OAuth access token - Cannot parse access token")
		return
	}
	if s.opts.AppSecret != "" && r.URL.Query().Get("appsecret_proof") != meta.AppSecretProof(s.opts.AppSecret, token) {
		graphError(w, http.StatusBadRequest, 100, 0, "GraphMethodException", "Invalid appsecret_proof provided in the API argument")
		return
	}
	if f, ok := s.failures.Take(account); ok && f.Serve(w, r) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req meta.SendRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil || req.Recipient.ID == "" || (req.Message == nil && req.SenderAction == "") {
		graphError(w, http.StatusBadRequest, 100, 0, "OAuthException", "(#100) The parameter recipient is required")
		return
	}
	if ok, retry := s.limiter.Allow(account, s.now()); !ok {
		if retry > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(simkit.RetryAfterSeconds(retry)))
		}
		code := 613
		if s.opts.Product == Instagram {
			code = 80002
		}
		graphError(w, http.StatusBadRequest, code, 0, "OAuthException", "Calls to this api have exceeded the rate limit.")
		return
	}
	if err := s.check(account, &req); err != nil {
		ge, _ := errors.AsType[*meta.GraphError](err)
		graphError(w, http.StatusBadRequest, ge.Code, ge.Subcode, "OAuthException", ge.Message)
		return
	}
	mid := s.mid()
	if req.Message != nil {
		sent := Sent{Account: account, Recipient: req.Recipient.ID, MID: mid, Request: req, Time: s.now()}
		s.mu.Lock()
		s.sent = append(s.sent, sent)
		s.mu.Unlock()
		s.echo(account, sent)
	}
	w.Header().Set("Content-Type", "application/json")
	res := map[string]string{"recipient_id": req.Recipient.ID}
	if req.Message != nil {
		res["message_id"] = mid
	}
	_ = json.NewEncoder(w).Encode(res)
}

// route reads the account of /{version}/{account}/messages.
func (s *Server) route(path string) (string, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 3 || parts[0] != s.opts.Version || parts[2] != "messages" {
		return "", false
	}
	return parts[1], true
}

// check applies the Send API's rules to an authenticated request.
func (s *Server) check(account string, req *meta.SendRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := account + "/" + req.Recipient.ID
	last, seen := s.inbound[key]
	switch {
	case !seen:
		return &meta.GraphError{Code: 100, Subcode: 2018001, Message: "(#100) No matching user found"}
	case s.blocked[key]:
		return &meta.GraphError{Code: 551, Subcode: 1545041, Message: "(#551) This person isn't available right now."}
	}
	window := 24 * time.Hour
	if req.MessagingType == meta.MessagingMessageTag && req.Tag == meta.TagHumanAgent {
		window = 7 * 24 * time.Hour
	}
	if s.now().Sub(last) > window {
		sub := 2018278
		if s.opts.Product == Instagram {
			sub = 2534022
		}
		return &meta.GraphError{Code: 10, Subcode: sub, Message: "(#10) This message is sent outside of allowed window."}
	}
	if m := req.Message; m != nil {
		switch {
		case s.opts.Product == Instagram && len(m.Text) > 1000:
			return &meta.GraphError{Code: 100, Message: "(#100) Length of param message[text] must be less than or equal to 1000 bytes"}
		case s.opts.Product == Messenger && utf8.RuneCountInString(m.Text) > 2000:
			return &meta.GraphError{Code: 100, Message: "(#100) Length of param message[text] must be less than or equal to 2000"}
		case len(m.QuickReplies) > 13:
			return &meta.GraphError{Code: 100, Message: "(#100) param message[quick_replies] must have at most 13 elements"}
		}
	}
	return nil
}
