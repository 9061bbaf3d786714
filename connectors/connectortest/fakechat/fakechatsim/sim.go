package fakechatsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/normalize"
)

// Defaults of Options.
const (
	DefaultAppSecret   = "fakechat-app-secret"
	DefaultVerifyToken = "fakechat-verify-token"
	DefaultAccount     = "1001"
	DefaultToken       = "fakechat-token-1001"
)

// DefaultRetries is the webhook retry schedule when Options.Retries is
// nil: short enough for tests and the demo (about 3s in all), where real
// platforms wait minutes (simkit.MetaRetries).
var DefaultRetries = []time.Duration{
	50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond,
	400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond,
}

// DocumentedLimit is fakechat's documented sending limit per account: 50
// messages a second, 10 at once.
var DocumentedLimit = simkit.Limit{PerSecond: 50, Burst: 10}

// Account is one fakechat account the app serves.
type Account struct {
	ID    string
	Token string
}

// Options configures a Server. The zero value is usable.
type Options struct {
	AppSecret   string    // signs webhook pushes; default DefaultAppSecret
	VerifyToken string    // of the handshake; default DefaultVerifyToken
	Accounts    []Account // default one: DefaultAccount with DefaultToken
	// RateLimit is the per-account limit of the messages API; nil means
	// DocumentedLimit, &simkit.Limit{} none.
	RateLimit *simkit.Limit
	// SendDelay delays every accepted send, as a distant server would
	// (benchmarks). SetSendDelay changes it.
	SendDelay time.Duration
	// Retries is the webhook retry schedule; nil means DefaultRetries,
	// an empty slice one attempt.
	Retries []time.Duration
	// PushTimeout bounds one push attempt; 0: simkit.DefaultPushTimeout.
	PushTimeout time.Duration
	// Client delivers pushes (one trusting a test TLS certificate, say);
	// nil: the pusher's own.
	Client *http.Client
	// Now is the clock of event times, records and rate limits; default
	// time.Now. Waits use real time.
	Now func() time.Time
	// Logger receives Debug records per request; default: discard.
	Logger *slog.Logger
}

// Server is a fakechat simulator listening on 127.0.0.1.
type Server struct {
	// URL is the base URL of the messages API, "http://127.0.0.1:<port>":
	// the connector's api_url.
	URL string

	opts     Options
	tokens   map[string]string
	now      func() time.Time
	log      *slog.Logger
	failures simkit.Failures
	limiter  *simkit.Limiter
	recorder *simkit.Recorder
	pusher   *simkit.Pusher

	ctx    context.Context // ends on Close: cuts send delays
	cancel context.CancelFunc
	srv    *http.Server
	served chan struct{}
	once   sync.Once

	mu        sync.Mutex
	sendDelay time.Duration
	nextIn    int
	nextOut   int
	nextPB    int
	nextEcho  int
	nextMedia int
	lastTS    int64
	known     map[string]bool // account + "\x00" + customer
	blocked   map[string]bool // customer ids
	sent      []SentMessage
	sentCh    chan struct{} // closed and replaced on each accepted send
	media     map[string]*blob
}

// SentMessage is one message the business sent, as the simulator accepted
// it.
type SentMessage struct {
	ID            string
	Account       string
	To            string // the customer id
	Text          string
	Choices       []Choice
	ReplyTo       string
	AttachmentURL string
	Tag           string
	At            time.Time
}

// Choice is a button of a sent message.
type Choice struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// Start serves a simulator on 127.0.0.1 on a free port until Close.
func Start(opts Options) (*Server, error) {
	if opts.AppSecret == "" {
		opts.AppSecret = DefaultAppSecret
	}
	if opts.VerifyToken == "" {
		opts.VerifyToken = DefaultVerifyToken
	}
	if len(opts.Accounts) == 0 {
		opts.Accounts = []Account{{ID: DefaultAccount, Token: DefaultToken}}
	}
	limit := DocumentedLimit
	if opts.RateLimit != nil {
		limit = *opts.RateLimit
	}
	if opts.Retries == nil {
		opts.Retries = DefaultRetries
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:      opts,
		tokens:    map[string]string{},
		now:       opts.Now,
		log:       opts.Logger,
		limiter:   simkit.NewLimiter(limit),
		recorder:  simkit.NewRecorder(0, opts.Now),
		sendDelay: opts.SendDelay,
		known:     map[string]bool{},
		blocked:   map[string]bool{},
		sentCh:    make(chan struct{}),
		media:     map[string]*blob{},
		served:    make(chan struct{}),
	}
	for _, a := range opts.Accounts {
		if a.ID == "" || a.Token == "" {
			return nil, errors.New("starting the fakechat simulator: every account needs an id and a token")
		}
		s.tokens[a.ID] = a.Token
	}
	s.pusher = simkit.NewPusher(simkit.PusherOptions{
		Client:  opts.Client,
		Sign:    s.signRequest,
		Retries: opts.Retries,
		Timeout: opts.PushTimeout,
		Now:     opts.Now,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.pusher.Close()
		return nil, fmt.Errorf("listening for the fakechat simulator: %w", err)
	}
	s.URL = "http://" + ln.Addr().String()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s.recorder.Wrap(s.routes()),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// Every request's context ends on Close, and with it every wait
		// inside the simulator (send delays, injected delays).
		BaseContext: func(net.Listener) context.Context { return s.ctx },
	}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // http.ErrServerClosed after Close
	}()
	return s, nil
}

// Close stops pushes (those pending are given up), cuts send delays and
// shuts the server down, waiting up to 5 seconds for requests in flight.
// It is idempotent.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		s.pusher.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if e := s.srv.Shutdown(ctx); e != nil {
			err = errors.Join(fmt.Errorf("shutting down the fakechat simulator: %w", e), s.srv.Close())
		}
		<-s.served
	})
	return err
}

// Settings is the fakechat block of a connector pointed at the simulator,
// in YAML.
func (s *Server) Settings() string {
	var b strings.Builder
	fmt.Fprintf(&b, "app_secret: %q\nverify_token: %q\naccounts:\n", s.opts.AppSecret, s.opts.VerifyToken)
	for _, a := range s.opts.Accounts {
		fmt.Fprintf(&b, "  - id: %q\n    access_token: %q\n", a.ID, a.Token)
	}
	fmt.Fprintf(&b, "api_url: %q\n", s.URL)
	return b.String()
}

// Accounts returns the accounts the simulator serves.
func (s *Server) Accounts() []Account { return append([]Account(nil), s.opts.Accounts...) }

// AppSecret returns the secret pushes are signed with.
func (s *Server) AppSecret() string { return s.opts.AppSecret }

// VerifyToken returns the token of the handshake.
func (s *Server) VerifyToken() string { return s.opts.VerifyToken }

// ConversationID is the Parley conversation id of account's conversation
// with customer, as the connector derives it: for building addresses in
// tests.
func ConversationID(account, customer string) normalize.ConversationID {
	return normalize.NewConversationID("fakechat", account, customer)
}

// Requests returns the record of every request the simulator served.
func (s *Server) Requests() *simkit.Recorder { return s.recorder }

// FailNext makes the next n requests of key (KeySend, KeyMedia or
// simkit.AnyKey) answer f, in the order failures were added.
func (s *Server) FailNext(key string, n int, f simkit.Failure) { s.failures.FailNext(key, n, f) }

// ClearFailures removes every pending injected failure.
func (s *Server) ClearFailures() { s.failures.Clear() }

// SetRateLimit changes the per-account limit of the messages API.
func (s *Server) SetRateLimit(l simkit.Limit) { s.limiter.SetLimit(l) }

// SetSendDelay changes the delay of every accepted send.
func (s *Server) SetSendDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sendDelay = d
}

// AddCustomer makes customer known to account, as if they had written:
// fakechat answers no_user to sends to anyone else.
func (s *Server) AddCustomer(account, customer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.known[account+"\x00"+customer] = true
}

// Block makes customer block the business: sends to them answer 403
// blocked, on every account.
func (s *Server) Block(customer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blocked[customer] = true
}

// Unblock undoes Block.
func (s *Server) Unblock(customer string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.blocked, customer)
}

// Sent returns what account sent customer, in order.
func (s *Server) Sent(account, customer string) []SentMessage {
	return s.filterSent(func(m SentMessage) bool { return m.Account == account && m.To == customer })
}

// AllSent returns every accepted message, in order.
func (s *Server) AllSent() []SentMessage { return s.filterSent(nil) }

// SentMessage returns the accepted message of id.
func (s *Server) SentMessage(id string) (SentMessage, bool) {
	got := s.filterSent(func(m SentMessage) bool { return m.ID == id })
	if len(got) == 0 {
		return SentMessage{}, false
	}
	return got[0], true
}

// WaitSent returns every accepted message once there are at least n, or
// ctx's error when it ends first.
func (s *Server) WaitSent(ctx context.Context, n int) ([]SentMessage, error) {
	for {
		s.mu.Lock()
		ch, count := s.sentCh, len(s.sent)
		s.mu.Unlock()
		if count >= n {
			return s.AllSent(), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %d sent messages, %d so far: %w", n, count, ctx.Err())
		case <-s.ctx.Done():
			return nil, errors.New("the fakechat simulator was closed")
		}
	}
}

func (s *Server) filterSent(keep func(SentMessage) bool) []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SentMessage
	for _, m := range s.sent {
		if keep == nil || keep(m) {
			m.Choices = append([]Choice(nil), m.Choices...)
			out = append(out, m)
		}
	}
	return out
}
