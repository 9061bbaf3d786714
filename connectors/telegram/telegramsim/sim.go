package telegramsim

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/connectors/simkit"
)

// DefaultToken is the token used when Options.Token is empty.
const DefaultToken = "123456:TEST-TOKEN"

// Disabled, given as a rate limit in Options, switches that limit off.
const Disabled = -1

// Error descriptions the simulator answers with, as the Bot API words them.
const (
	DescUnauthorized       = "Unauthorized"
	DescNotFound           = "Not Found"
	DescBlocked            = "Forbidden: bot was blocked by the user"
	DescChatNotFound       = "Bad Request: chat not found"
	DescMigrated           = "Bad Request: group chat was upgraded to a supergroup chat"
	DescTextEmpty          = "Bad Request: message text is empty"
	DescMessageTooLong     = "Bad Request: message is too long"
	DescCaptionTooLong     = "Bad Request: message caption is too long"
	DescReplyNotFound      = "Bad Request: message to be replied not found"
	DescFileTooBig         = "Bad Request: file is too big"
	DescInvalidFileID      = "Bad Request: invalid file_id"
	DescWrongFile          = "Bad Request: wrong file identifier/HTTP URL specified"
	DescQueryTooOld        = "Bad Request: query is too old and response timeout expired or query ID is invalid"
	DescCantParseEntities  = "Bad Request: can't parse entities: " // followed by the parser's reason
	DescConflictPoller     = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
	DescConflictWebhook    = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
	DescInternalError      = "Internal Server Error"
	DescTooManyRequestsFmt = "Too Many Requests: retry after %d"
)

// Limits of the Bot API that the simulator enforces.
const (
	MaxTextLength    = 4096     // UTF-16 code units after entity parsing
	MaxCaptionLength = 1024     // UTF-16 code units after entity parsing
	MaxDownloadSize  = 20 << 20 // bytes a bot may fetch with getFile
)

// Options configures a Sim. The zero value is usable.
type Options struct {
	// Token is the bot token, "<bot id>:<secret>"; requests with another token get 401. Default
	// DefaultToken. The bot id of getMe is the numeric prefix (123456 when there is none).
	Token string
	// BotUsername and BotName describe the bot in getMe and in sent messages. Defaults
	// "parley_sim_bot" and "Parley Sim".
	BotUsername string
	BotName     string

	// Now is the clock for message dates and rate limits. Default time.Now. Long-poll timeouts and
	// webhook back-off always use real time.
	Now func() time.Time

	// Rate limits on send methods. Zero means Telegram's value; Disabled (any negative value) switches
	// the limit off. SetRateLimits changes them later.
	PerChatInterval time.Duration // minimum gap between two messages to one chat; default 1s
	GlobalPerSecond int           // messages per second across all chats; default 30
	GroupPerMinute  int           // messages per minute to one group (negative chat id); default 20

	// Latency delays every Bot API answer, to model a slow or distant server. Default 0.
	Latency time.Duration
	// MaxPollTimeout caps the timeout of getUpdates. Default 50s.
	MaxPollTimeout time.Duration

	// Webhook delivery. WebhookRetryMin and WebhookRetryMax bound the doubling back-off after a failed
	// delivery (defaults 50ms and 1s). WebhookTimeout bounds one delivery (default 10s).
	// WebhookMaxAttempts drops an update after that many failed deliveries (0: retry for ever).
	WebhookRetryMin    time.Duration
	WebhookRetryMax    time.Duration
	WebhookTimeout     time.Duration
	WebhookMaxAttempts int
	// WebhookClient delivers webhook requests, e.g. one trusting an httptest TLS certificate.
	// Default: a client of the simulator's own.
	WebhookClient *http.Client

	// FirstUpdateID is the update_id of the first queued update. Default 1.
	FirstUpdateID int64
	// ListenAddr is where Start listens. Default "127.0.0.1:0".
	ListenAddr string
	// Logger receives Debug records per request and delivery. Default: discard.
	Logger *slog.Logger
}

// RateLimits are the flood limits on send methods; a zero field disables that limit.
type RateLimits struct {
	PerChatInterval time.Duration
	GlobalPerSecond int
	GroupPerMinute  int
}

// Sim is a simulated Bot API for one bot. It is an http.Handler; all methods are safe for concurrent
// use. Close stops its background work.
type Sim struct {
	token string
	botID int64
	bot   models.User
	now   func() time.Time
	log   *slog.Logger
	opts  Options

	ctx    context.Context // ends on Close; parent of webhook deliveries
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	changed chan struct{} // closed and replaced when the update queue or webhook changes

	// inbound
	nextUpdateID   int64
	queue          []queuedUpdate
	allowed        []string // sticky allowed_updates; nil means the default set
	poll           *poller
	webhook        *webhookState
	webhookErrDate int64
	webhookErrMsg  string
	pushers        sync.WaitGroup

	// chats, files, callbacks
	chats        map[int64]*chatState
	files        map[string]*fileEntry
	filesByPath  map[string]*fileEntry
	nextFile     int
	callbacks    map[string]bool // open callback queries
	nextCallback int

	// outbound record
	sent      []SentMessage
	sentCh    chan struct{} // closed and replaced on each recorded send
	answers   []CallbackAnswer
	actions   []ChatAction
	limits    RateLimits
	global    window
	failures  simkit.Failures
	requests  map[string]int
	responses map[string]map[int]int
}

// New returns a simulator configured by opts. It does no I/O and starts nothing.
func New(opts Options) *Sim {
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.BotUsername == "" {
		opts.BotUsername = "parley_sim_bot"
	}
	if opts.BotName == "" {
		opts.BotName = "Parley Sim"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxPollTimeout <= 0 {
		opts.MaxPollTimeout = 50 * time.Second
	}
	if opts.WebhookRetryMin <= 0 {
		opts.WebhookRetryMin = 50 * time.Millisecond
	}
	if opts.WebhookRetryMax < opts.WebhookRetryMin {
		opts.WebhookRetryMax = max(time.Second, opts.WebhookRetryMin)
	}
	if opts.WebhookTimeout <= 0 {
		opts.WebhookTimeout = 10 * time.Second
	}
	if opts.FirstUpdateID <= 0 {
		opts.FirstUpdateID = 1
	}
	if opts.ListenAddr == "" {
		opts.ListenAddr = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	idPart, _, _ := strings.Cut(opts.Token, ":")
	botID, err := strconv.ParseInt(idPart, 10, 64)
	if err != nil || botID <= 0 {
		botID = 123456
	}

	s := &Sim{
		token: opts.Token,
		botID: botID,
		bot: models.User{
			ID: botID, IsBot: true, FirstName: opts.BotName, Username: opts.BotUsername,
		},
		now:          opts.Now,
		log:          opts.Logger,
		opts:         opts,
		changed:      make(chan struct{}),
		nextUpdateID: opts.FirstUpdateID,
		chats:        map[int64]*chatState{},
		files:        map[string]*fileEntry{},
		filesByPath:  map[string]*fileEntry{},
		callbacks:    map[string]bool{},
		sentCh:       make(chan struct{}),
		requests:     map[string]int{},
		responses:    map[string]map[int]int{},
		limits: RateLimits{
			PerChatInterval: pick(opts.PerChatInterval, time.Second),
			GlobalPerSecond: pick(opts.GlobalPerSecond, 30),
			GroupPerMinute:  pick(opts.GroupPerMinute, 20),
		},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// pick applies the Options convention: zero means def, negative means disabled (zero).
func pick[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Close stops webhook delivery, wakes every pending long poll (which then answers at once) and waits
// for the simulator's goroutines. The handler keeps answering afterwards. Close is idempotent.
func (s *Sim) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	s.notifyLocked()
	s.mu.Unlock()
	s.pushers.Wait()
	return nil
}

// Token returns the bot token the simulator accepts.
func (s *Sim) Token() string { return s.token }

// Bot returns the bot user, as getMe reports it.
func (s *Sim) Bot() models.User { return s.bot }

// notifyLocked wakes everything waiting for a change of the update queue or webhook.
func (s *Sim) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// --- responses --------------------------------------------------------------------------------------

// apiError is an unsuccessful Bot API answer.
type apiError struct {
	Code        int
	Description string
	RetryAfter  int
	MigrateTo   int64
}

func badRequest(desc string) *apiError {
	return &apiError{Code: http.StatusBadRequest, Description: desc}
}

// described is a successful result that also carries a description, as setWebhook's answers do.
type described struct {
	result      any
	description string
}

type responseParameters struct {
	RetryAfter      int   `json:"retry_after,omitempty"`
	MigrateToChatID int64 `json:"migrate_to_chat_id,omitempty"`
}

// errorBody is an unsuccessful answer.
type errorBody struct {
	OK          bool                `json:"ok"`
	ErrorCode   int                 `json:"error_code,omitempty"`
	Description string              `json:"description,omitempty"`
	Parameters  *responseParameters `json:"parameters,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	data, err := json.Marshal(body)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"ok":false,"error_code":500,"description":"Internal Server Error"}`)
	}
	kit.WriteJSONBytes(w, status, data)
}

// okBody is a successful answer; "result" is present even when it is false or empty.
type okBody struct {
	OK          bool   `json:"ok"`
	Result      any    `json:"result"`
	Description string `json:"description,omitempty"`
}

func writeResult(w http.ResponseWriter, result any) {
	body := okBody{OK: true, Result: result}
	if d, ok := result.(described); ok {
		body.Result, body.Description = d.result, d.description
	}
	writeJSON(w, http.StatusOK, body)
}

func writeError(w http.ResponseWriter, e *apiError) {
	kit.WriteJSONBytes(w, e.Code, errorJSON(e))
}

// errorJSON is the body of an unsuccessful answer.
func errorJSON(e *apiError) []byte {
	body := errorBody{ErrorCode: e.Code, Description: e.Description}
	if e.RetryAfter > 0 || e.MigrateTo != 0 {
		body.Parameters = &responseParameters{RetryAfter: e.RetryAfter, MigrateToChatID: e.MigrateTo}
	}
	data, _ := json.Marshal(body) // strings and numbers only: it cannot fail
	return data
}

// --- routing ----------------------------------------------------------------------------------------

type handlerFunc func(s *Sim, ctx context.Context, p *params) (any, *apiError)

type method struct {
	name string
	h    handlerFunc
}

// methods maps lower-cased method names (the Bot API ignores their case) to canonical names and
// handlers.
var methods = func() map[string]method {
	m := map[string]method{}
	for name, h := range map[string]handlerFunc{
		"getMe":               (*Sim).getMe,
		"getUpdates":          (*Sim).getUpdates,
		"setWebhook":          (*Sim).setWebhook,
		"deleteWebhook":       (*Sim).deleteWebhook,
		"getWebhookInfo":      (*Sim).getWebhookInfo,
		"sendMessage":         (*Sim).sendMessage,
		"sendPhoto":           (*Sim).sendPhoto,
		"sendDocument":        (*Sim).sendDocument,
		"sendChatAction":      (*Sim).sendChatAction,
		"answerCallbackQuery": (*Sim).answerCallbackQuery,
		"getFile":             (*Sim).getFile,
	} {
		m[strings.ToLower(name)] = method{name, h}
	}
	return m
}()

// FileDownloadKey is the key under which Requests counts file downloads.
const FileDownloadKey = "file"

// ServeHTTP answers Bot API requests at /bot<token>/<method> and file downloads at
// /file/bot<token>/<file_path>.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/file/bot"); ok {
		s.serveFile(w, r, rest)
		return
	}
	rest, ok := strings.CutPrefix(path, "/bot")
	if !ok {
		writeError(w, &apiError{Code: http.StatusNotFound, Description: DescNotFound})
		return
	}
	token, method, _ := strings.Cut(rest, "/")
	m, known := methods[strings.ToLower(method)]
	name := method
	if known {
		name = m.name
	}
	if status := s.serveMethod(w, r, token, name, known, m.h); status != 0 {
		s.recordResponse(name, status)
	}
}

// recordResponse counts an answer. A dropped connection (status 0) is
// counted by serveMethod before it drops, so a client that sees the drop
// also sees it counted.
func (s *Sim) recordResponse(name string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.responses[name] == nil {
		s.responses[name] = map[int]int{}
	}
	s.responses[name][status]++
}

// serveMethod answers one Bot API call and returns the status it answered with (0 for a dropped
// connection).
func (s *Sim) serveMethod(w http.ResponseWriter, r *http.Request, token, name string, known bool, h handlerFunc) int {
	s.mu.Lock()
	s.requests[name]++
	s.mu.Unlock()

	fail := func(e *apiError) int {
		s.log.Debug("telegramsim answered with an error", "method", name, "status", e.Code, "description", e.Description)
		writeError(w, e)
		return e.Code
	}
	if token != s.token {
		return fail(&apiError{Code: http.StatusUnauthorized, Description: DescUnauthorized})
	}
	if !known {
		return fail(&apiError{Code: http.StatusNotFound, Description: DescNotFound})
	}
	p, aerr := readParams(w, r)
	if aerr != nil {
		return fail(aerr)
	}
	if !kit.Sleep(r.Context(), s.opts.Latency) {
		return fail(&apiError{Code: http.StatusInternalServerError, Description: DescInternalError})
	}
	if f, ok := s.takeFailure(name, p); ok {
		if f.Drop {
			s.recordResponse(name, 0) // before the drop, so that a client that sees it sees it counted
		}
		if f.Serve(w, r) {
			s.log.Debug("telegramsim injected a failure", "method", name, "status", f.Status)
			return f.Status // 0 for a drop, counted above
		}
	}
	result, aerr := h(s, r.Context(), p)
	if aerr != nil {
		return fail(aerr)
	}
	s.log.Debug("telegramsim answered", "method", name)
	writeResult(w, result)
	return http.StatusOK
}

// --- counters ---------------------------------------------------------------------------------------

// The counters are the simulator's own rather than a simkit.Recorder: Requests counts every request
// since New by its canonical method name, where a Recorder keeps the latest requests (bodies
// included, and uploads here reach 50 MB) up to a bound; and Responses counts answers by status,
// a dropped connection before the drop, which a Recorder does not see.

// Requests returns how many requests named method (canonical spelling, e.g. "sendMessage"; file
// downloads under FileDownloadKey) the simulator received, whatever their outcome.
func (s *Sim) Requests(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[method]
}

// RequestCounts returns a copy of all request counters by method.
func (s *Sim) RequestCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// Responses returns how often method was answered with each HTTP status (0: connection dropped).
func (s *Sim) Responses(method string) map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int]int{}
	for k, v := range s.responses[method] {
		out[k] = v
	}
	return out
}

// --- getMe ------------------------------------------------------------------------------------------

func (s *Sim) getMe(context.Context, *params) (any, *apiError) {
	u := s.bot
	u.CanJoinGroups = true
	return &u, nil
}

var _ http.Handler = (*Sim)(nil)
