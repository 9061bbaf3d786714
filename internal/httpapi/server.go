// Package httpapi is Parley's HTTP surface (CONTRACT §3): platform webhooks,
// the helpdesk API under /v1 with bearer auth, health, readiness and
// metrics. It owns the cross-cutting rules — body limits, timeouts, request
// ids, a 503 while the gateway is not taking traffic — so connectors' webhook
// handlers only verify, parse and publish.
package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

// ErrNotFound is what Media and Conversation lookups return (wrapped) for
// an id nobody has.
var ErrNotFound = errors.New("not found")

// Options wires the server to the rest of the gateway. Function fields keep
// this package free of the gateway's construction details.
type Options struct {
	Listen       string
	MaxBodyBytes int64
	// Tokens are the bearer tokens accepted by /v1/*. With none, /v1/*
	// answers 401 to everyone.
	Tokens []string

	// Webhook returns the handler of an enabled connector.
	Webhook func(connectorID string) (http.Handler, bool)
	// Ready reports whether NATS and the connectors can take traffic, with
	// a JSON-able description of each part (e.g. "nats", "connectors") for
	// the /readyz body. The server adds "ready" and "draining" to that body
	// itself, so the body always agrees with the status: while draining,
	// "ready" is false whatever Ready says.
	Ready func() (bool, map[string]any)
	// SubmitReply stores a reply command in the outbox. Errors:
	// *normalize.InvalidReplyError → 400, directory.ErrUnknown → 404,
	// bus.ErrNotDurable → 503.
	SubmitReply func(ctx context.Context, r *normalize.Reply) (duplicate bool, err error)
	// Conversation returns a directory entry (directory.ErrUnknown → 404).
	Conversation func(ctx context.Context, id normalize.ConversationID) (*directory.Entry, error)
	// Media opens stored media bytes (ErrNotFound → 404).
	Media func(ctx context.Context, id normalize.MediaID) (io.ReadCloser, string, int64, error)
	// Metrics serves /metrics.
	Metrics http.Handler
	// OnWebhook observes every webhook answer (for metrics); may be nil.
	// connectorID is a configured connector's id, or UnknownConnector for
	// a path naming none: labels never come from the outside.
	OnWebhook func(connectorID string, status int)

	Logger *slog.Logger
}

// Server is the HTTP server.
type Server struct {
	opts     Options
	mux      *http.ServeMux
	srv      *http.Server
	draining atomic.Bool
	ln       net.Listener
}

// New builds the server; it does not listen yet.
func New(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /webhooks/{id}", s.webhook)
	s.mux.HandleFunc("GET /webhooks/{id}", s.webhook)
	s.mux.HandleFunc("POST /v1/replies", s.auth(s.postReply))
	s.mux.HandleFunc("GET /v1/conversations/{id}", s.auth(s.getConversation))
	s.mux.HandleFunc("GET /v1/media/{id}", s.auth(s.getMedia))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if opts.Metrics != nil {
		s.mux.Handle("GET /metrics", opts.Metrics)
	}
	s.srv = &http.Server{
		Handler:           s.withRequestID(s.mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	return s
}

// Handler returns the routed handler (for tests and benchmarks).
func (s *Server) Handler() http.Handler { return s.srv.Handler }

// Listen binds the listen address; Addr tells where.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.opts.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, once Listen succeeded.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Serve serves until Shutdown; it returns nil after a clean shutdown.
func (s *Server) Serve() error {
	if s.ln == nil {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving http: %w", err)
	}
	return nil
}

// Drain makes webhooks and reply submissions answer 503 from now on, so
// platforms retry elsewhere or later while in-flight work finishes.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown drains, then stops the server, waiting for in-flight requests
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	return s.srv.Shutdown(ctx)
}

type ctxKey struct{}

func (s *Server) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 128 {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

// RequestID returns the request id of a request served by this server.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// UnknownConnector is the OnWebhook id of requests to a connector id that
// is not configured with a webhook here, so that a flood of made-up ids
// adds one metric series, not one per id.
const UnknownConnector = "_unknown"

func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec := &statusRecorder{ResponseWriter: w}
	h, ok := s.opts.Webhook(id)
	label := id
	if !ok {
		label = UnknownConnector
	}
	defer func() {
		if s.opts.OnWebhook != nil {
			s.opts.OnWebhook(label, rec.status)
		}
	}()
	if !ok {
		writeError(rec, http.StatusNotFound, "unknown_connector", "no enabled connector with this id")
		return
	}
	if s.draining.Load() {
		rec.Header().Set("Retry-After", "5")
		writeError(rec, http.StatusServiceUnavailable, "shutting_down", "this instance is shutting down; retry")
		return
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		writeError(rec, http.StatusRequestEntityTooLarge, "too_large", "body over the limit")
		return
	}
	r.Body = http.MaxBytesReader(rec, r.Body, s.opts.MaxBodyBytes)
	h.ServeHTTP(rec, r)
}

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !s.tokenOK(strings.TrimSpace(got)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required")
			return
		}
		next(w, r)
	}
}

func (s *Server) tokenOK(got string) bool {
	if got == "" {
		return false
	}
	ok := 0
	for _, t := range s.opts.Tokens {
		if t == "" {
			continue
		}
		// Compare against every token so timing does not tell which matched.
		ok |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
	}
	return ok == 1
}

func (s *Server) postReply(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "this instance is shutting down; retry")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "body over the limit")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_reply", "reading body: "+err.Error())
		return
	}
	reply, err := normalize.ParseReply(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, string(normalize.ErrInvalidReply), err.Error())
		return
	}
	dup, err := s.opts.SubmitReply(r.Context(), reply)
	var inv *normalize.InvalidReplyError
	switch {
	case errors.As(err, &inv):
		writeError(w, http.StatusBadRequest, string(normalize.ErrInvalidReply), err.Error())
	case errors.Is(err, directory.ErrUnknown):
		writeError(w, http.StatusNotFound, string(normalize.ErrUnknownConversation), "no conversation with this id")
	case errors.Is(err, bus.ErrNotDurable):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "not_durable", "the outbox cannot store replies right now; retry")
	case err != nil:
		// Whatever else failed (the directory unreachable, a timeout) is
		// passing: the helpdesk must retry, as after 503.
		s.opts.Logger.Error("submitting reply", "reply_id", reply.ID, "error", err, "request_id", RequestID(r.Context()))
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the outbox cannot take replies right now; retry")
	default:
		out := map[string]any{"id": reply.ID, "conversation_id": reply.ConversationID}
		if dup {
			out["duplicate"] = true
		}
		writeJSON(w, http.StatusAccepted, out)
	}
}

func (s *Server) getConversation(w http.ResponseWriter, r *http.Request) {
	id := normalize.ConversationID(r.PathValue("id"))
	e, err := s.opts.Conversation(r.Context(), id)
	switch {
	case errors.Is(err, directory.ErrUnknown), errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, string(normalize.ErrUnknownConversation), "no conversation with this id")
	case errors.Is(err, bus.ErrNotDurable):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the directory is unreachable; retry")
	case err != nil:
		s.opts.Logger.Error("reading conversation", "conversation_id", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the directory is unreachable; retry")
	default:
		writeJSON(w, http.StatusOK, e)
	}
}

func (s *Server) getMedia(w http.ResponseWriter, r *http.Request) {
	id := normalize.MediaID(r.PathValue("id"))
	if !normalize.ValidID("m_", string(id)) {
		writeError(w, http.StatusNotFound, "unknown_media", "no media with this id")
		return
	}
	rc, ctype, size, err := s.opts.Media(r.Context(), id)
	if errors.Is(err, ErrNotFound) {
		writeError(w, http.StatusNotFound, "unknown_media", "no media with this id (it may not be stored yet)")
		return
	}
	if err != nil {
		s.opts.Logger.Error("opening media", "media_id", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the media store is unreachable; retry")
		return
	}
	defer rc.Close()
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "private, max-age=3600, immutable")
	if size >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	}
	if _, err := io.Copy(w, rc); err != nil {
		s.opts.Logger.Warn("streaming media", "media_id", id, "error", err)
	}
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ok, parts := s.opts.Ready()
	draining := s.draining.Load()
	ready := ok && !draining
	body := make(map[string]any, len(parts)+2)
	maps.Copy(body, parts)
	body["ready"] = ready
	body["draining"] = draining
	code := http.StatusOK
	if !ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes the contract's error body {"error":{"code","message"}}.
func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]string{"code": errCode, "message": msg}})
}
