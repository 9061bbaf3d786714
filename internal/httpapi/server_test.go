package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/httpapi"
	"github.com/parley-gateway/parley/internal/metrics"
	"github.com/parley-gateway/parley/normalize"
)

// testMaxBody is the body limit of every test server: small, so that "over
// the limit" needs no large bodies.
const testMaxBody = 1024

// requestTimeout bounds every request a test makes.
const requestTimeout = 10 * time.Second

var (
	goodToken = "tok-helpdesk"
	convID    = normalize.NewConversationID("telegram", "1", "42")
	mediaID   = normalize.NewMediaID("telegram", "1", "file-1")
	hexID     = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// fakes are the server's function hooks. Every hook records what it was
// asked; a zero fakes answers "all is well" with no connectors.
type fakes struct {
	mu sync.Mutex

	hooks     map[string]http.Handler // Webhook: connector id → handler
	ready     bool
	readyBody map[string]any
	submit    func(r *normalize.Reply) (bool, error)
	conv      func(id normalize.ConversationID) (*directory.Entry, error)
	media     func(id normalize.MediaID) (io.ReadCloser, string, int64, error)

	replies     []*normalize.Reply
	mediaCalls  int
	webhookSeen []string // "id status" per OnWebhook call
}

// Replies returns the replies SubmitReply was given.
func (f *fakes) Replies() []*normalize.Reply {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*normalize.Reply(nil), f.replies...)
}

// MediaCalls returns how many times Media was called.
func (f *fakes) MediaCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mediaCalls
}

// waitWebhookSeen waits until OnWebhook was called n times: it runs after
// the answer is written, so the client may see the answer first.
func (f *fakes) waitWebhookSeen(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.NewTimer(requestTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		f.mu.Lock()
		seen := append([]string(nil), f.webhookSeen...)
		f.mu.Unlock()
		if len(seen) >= n {
			return seen
		}
		select {
		case <-deadline.C:
			return seen
		case <-tick.C:
		}
	}
}

func (f *fakes) options() httpapi.Options {
	return httpapi.Options{
		Listen:       "127.0.0.1:0",
		MaxBodyBytes: testMaxBody,
		Tokens:       []string{goodToken},
		Webhook: func(id string) (http.Handler, bool) {
			h, ok := f.hooks[id]
			return h, ok
		},
		Ready: func() (bool, map[string]any) { return f.ready, f.readyBody },
		SubmitReply: func(_ context.Context, r *normalize.Reply) (bool, error) {
			f.mu.Lock()
			f.replies = append(f.replies, r)
			f.mu.Unlock()
			if f.submit == nil {
				return false, nil
			}
			return f.submit(r)
		},
		Conversation: func(_ context.Context, id normalize.ConversationID) (*directory.Entry, error) {
			if f.conv == nil {
				return nil, fmt.Errorf("conversation %s: %w", id, directory.ErrUnknown)
			}
			return f.conv(id)
		},
		Media: func(_ context.Context, id normalize.MediaID) (io.ReadCloser, string, int64, error) {
			f.mu.Lock()
			f.mediaCalls++
			f.mu.Unlock()
			if f.media == nil {
				return nil, "", 0, fmt.Errorf("media %s: %w", id, httpapi.ErrNotFound)
			}
			return f.media(id)
		},
		OnWebhook: func(id string, status int) {
			f.mu.Lock()
			f.webhookSeen = append(f.webhookSeen, fmt.Sprintf("%s %d", id, status))
			f.mu.Unlock()
		},
	}
}

// serve runs a real httpapi.Server's handler behind httptest over loopback.
func serve(t *testing.T, opts httpapi.Options) (*httpapi.Server, string) {
	t.Helper()
	s := httpapi.New(opts)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody is the contract's error body.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (r *response) errorCode(t *testing.T) string {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", r.body, err)
	}
	if e.Error.Message == "" {
		t.Errorf("error body %s has no message", r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type of an error = %q, want application/json", ct)
	}
	return e.Error.Code
}

func (r *response) wantError(t *testing.T, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if got := r.errorCode(t); got != code {
		t.Errorf("error code = %q, want %q; body %s", got, code, r.body)
	}
}

// do sends one request; a nil header map sends none, and body may be nil.
func do(t *testing.T, method, url string, header map[string]string, body io.Reader) *response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer of %s %s: %v", method, url, err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

func replyBody(id string) string {
	return fmt.Sprintf(`{"id":%q,"conversation_id":%q,"text":"hello"}`, id, convID)
}

func TestBearerAuth(t *testing.T) {
	tests := []struct {
		name   string
		tokens []string
		header map[string]string
		want   int
	}{
		{"no authorization header is refused", []string{goodToken}, nil, http.StatusUnauthorized},
		{"a wrong token is refused", []string{goodToken}, bearer("tok-wrong"), http.StatusUnauthorized},
		{"a prefix of the token is refused", []string{goodToken}, bearer(goodToken[:4]), http.StatusUnauthorized},
		{"another scheme is refused", []string{goodToken}, map[string]string{"Authorization": "Basic " + goodToken}, http.StatusUnauthorized},
		{"an empty bearer is refused", []string{goodToken}, map[string]string{"Authorization": "Bearer "}, http.StatusUnauthorized},
		{"the right token is accepted", []string{goodToken}, bearer(goodToken), http.StatusAccepted},
		{"surrounding spaces are ignored", []string{goodToken}, bearer(" " + goodToken + " "), http.StatusAccepted},
		{"any of several tokens is accepted", []string{"tok-a", "tok-b", goodToken}, bearer("tok-b"), http.StatusAccepted},
		{"the last of several tokens is accepted", []string{"tok-a", "tok-b"}, bearer("tok-b"), http.StatusAccepted},
		{"with no tokens configured everyone is refused", nil, bearer(goodToken), http.StatusUnauthorized},
		{"an empty configured token lets no empty bearer in", []string{""}, map[string]string{"Authorization": "Bearer "}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakes{}
			opts := f.options()
			opts.Tokens = tt.tokens
			_, url := serve(t, opts)
			resp := do(t, http.MethodPost, url+"/v1/replies", tt.header, strings.NewReader(replyBody("r-1")))
			if tt.want == http.StatusUnauthorized {
				resp.wantError(t, http.StatusUnauthorized, "unauthorized")
				if got := resp.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
				}
				if len(f.Replies()) != 0 {
					t.Errorf("SubmitReply was called %d times for a refused request", len(f.Replies()))
				}
				return
			}
			if resp.status != tt.want {
				t.Fatalf("status = %d, want %d; body %s", resp.status, tt.want, resp.body)
			}
		})
	}

	// Every /v1 route is behind the same check.
	t.Run("every v1 route needs a token", func(t *testing.T) {
		f := &fakes{}
		_, url := serve(t, f.options())
		for _, path := range []string{"/v1/conversations/" + string(convID), "/v1/media/" + string(mediaID)} {
			do(t, http.MethodGet, url+path, nil, nil).wantError(t, http.StatusUnauthorized, "unauthorized")
		}
		if f.MediaCalls() != 0 {
			t.Errorf("Media was called %d times without a token", f.MediaCalls())
		}
	})
}

func TestPostReply(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		submit func(r *normalize.Reply) (bool, error)
		check  func(t *testing.T, f *fakes, resp *response)
	}{
		{
			name: "a valid reply is accepted with its ids",
			body: replyBody("r-1"),
			check: func(t *testing.T, f *fakes, resp *response) {
				if resp.status != http.StatusAccepted {
					t.Fatalf("status = %d, want 202; body %s", resp.status, resp.body)
				}
				var got map[string]any
				if err := json.Unmarshal(resp.body, &got); err != nil {
					t.Fatalf("body %s: %v", resp.body, err)
				}
				want := map[string]any{"id": "r-1", "conversation_id": string(convID)}
				if len(got) != len(want) || got["id"] != want["id"] || got["conversation_id"] != want["conversation_id"] {
					t.Errorf("body = %v, want %v", got, want)
				}
				if len(f.Replies()) != 1 {
					t.Fatalf("SubmitReply called %d times, want 1", len(f.Replies()))
				}
				if r := f.Replies()[0]; r.ID != "r-1" || r.ConversationID != convID || r.Text != "hello" {
					t.Errorf("SubmitReply got %+v", r)
				}
			},
		},
		{
			name:   "a duplicate is accepted and flagged",
			body:   replyBody("r-1"),
			submit: func(*normalize.Reply) (bool, error) { return true, nil },
			check: func(t *testing.T, _ *fakes, resp *response) {
				if resp.status != http.StatusAccepted {
					t.Fatalf("status = %d, want 202; body %s", resp.status, resp.body)
				}
				var got struct {
					ID        string `json:"id"`
					Duplicate bool   `json:"duplicate"`
				}
				if err := json.Unmarshal(resp.body, &got); err != nil {
					t.Fatal(err)
				}
				if got.ID != "r-1" || !got.Duplicate {
					t.Errorf("body = %s, want id r-1 and duplicate true", resp.body)
				}
			},
		},
		{
			name: "a body that is not JSON is invalid",
			body: `{"id":`,
			check: func(t *testing.T, f *fakes, resp *response) {
				resp.wantError(t, http.StatusBadRequest, "invalid_reply")
				if len(f.Replies()) != 0 {
					t.Errorf("SubmitReply was called for an unparsable body")
				}
			},
		},
		{
			name: "a reply without text or attachments is invalid",
			body: fmt.Sprintf(`{"id":"r-1","conversation_id":%q}`, convID),
			check: func(t *testing.T, f *fakes, resp *response) {
				resp.wantError(t, http.StatusBadRequest, "invalid_reply")
				if len(f.Replies()) != 0 {
					t.Errorf("SubmitReply was called for an invalid reply")
				}
			},
		},
		{
			name: "a reply refused by the outbox as invalid is a 400",
			body: replyBody("r-1"),
			submit: func(*normalize.Reply) (bool, error) {
				return false, &normalize.InvalidReplyError{Problems: []string{"attachments[0]: not supported"}}
			},
			check: func(t *testing.T, _ *fakes, resp *response) {
				resp.wantError(t, http.StatusBadRequest, "invalid_reply")
			},
		},
		{
			name: "an unknown conversation is a 404",
			body: replyBody("r-1"),
			submit: func(r *normalize.Reply) (bool, error) {
				return false, fmt.Errorf("conversation %s: %w", r.ConversationID, directory.ErrUnknown)
			},
			check: func(t *testing.T, _ *fakes, resp *response) {
				resp.wantError(t, http.StatusNotFound, "unknown_conversation")
			},
		},
		{
			name: "an outbox that cannot store is a 503 with Retry-After",
			body: replyBody("r-1"),
			submit: func(*normalize.Reply) (bool, error) {
				return false, fmt.Errorf("storing reply: %w: nats down", bus.ErrNotDurable)
			},
			check: func(t *testing.T, _ *fakes, resp *response) {
				resp.wantError(t, http.StatusServiceUnavailable, "not_durable")
				if resp.header.Get("Retry-After") == "" {
					t.Errorf("no Retry-After on a 503")
				}
			},
		},
		{
			name:   "any other failure is a 503 to retry that tells nothing",
			body:   replyBody("r-1"),
			submit: func(*normalize.Reply) (bool, error) { return false, errors.New("secret internals") },
			check: func(t *testing.T, _ *fakes, resp *response) {
				resp.wantError(t, http.StatusServiceUnavailable, "unavailable")
				if resp.header.Get("Retry-After") == "" {
					t.Errorf("no Retry-After on a 503")
				}
				if bytes.Contains(resp.body, []byte("secret internals")) {
					t.Errorf("the answer leaks the cause: %s", resp.body)
				}
			},
		},
		{
			name: "a body over the limit is a 413",
			body: fmt.Sprintf(`{"id":"r-1","conversation_id":%q,"text":%q}`, convID, strings.Repeat("x", testMaxBody)),
			check: func(t *testing.T, f *fakes, resp *response) {
				resp.wantError(t, http.StatusRequestEntityTooLarge, "too_large")
				if len(f.Replies()) != 0 {
					t.Errorf("SubmitReply was called for a body over the limit")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakes{submit: tt.submit}
			_, url := serve(t, f.options())
			resp := do(t, http.MethodPost, url+"/v1/replies", bearer(goodToken), strings.NewReader(tt.body))
			tt.check(t, f, resp)
		})
	}
}

// readingHook reads the whole body, as a connector's handler does, and
// answers 413 when the body limit stops it.
type readingHook struct {
	mu    sync.Mutex
	calls int
	errs  []error
}

// Calls returns how many requests reached the handler.
func (h *readingHook) Calls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func (h *readingHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	_, err := io.ReadAll(r.Body)
	if err != nil {
		h.mu.Lock()
		h.errs = append(h.errs, err)
		h.mu.Unlock()
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`)
}

// chunked hides a reader's length, so the client sends it chunked and the
// server learns its size only by reading.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestWebhooks(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		body   func() io.Reader
		drain  bool
		status int
		code   string // error code of the server's own answers; "" for the handler's
		calls  int    // handler calls expected
		check  func(t *testing.T, h *readingHook)
	}{
		{
			name: "a known connector's handler answers", path: "/webhooks/tg-eu",
			body: func() io.Reader { return strings.NewReader(`{"update_id":1}`) }, status: http.StatusOK, calls: 1,
		},
		{
			name: "an unknown connector is a 404", path: "/webhooks/nobody",
			body: func() io.Reader { return strings.NewReader(`{}`) }, status: http.StatusNotFound, code: "unknown_connector",
		},
		{
			name: "a declared length over the limit is refused before the handler", path: "/webhooks/tg-eu",
			body:   func() io.Reader { return bytes.NewReader(make([]byte, testMaxBody+1)) },
			status: http.StatusRequestEntityTooLarge, code: "too_large",
		},
		{
			name: "a body exactly at the limit is read whole", path: "/webhooks/tg-eu",
			body:   func() io.Reader { return bytes.NewReader(make([]byte, testMaxBody)) },
			status: http.StatusOK, calls: 1,
		},
		{
			name: "a chunked body over the limit stops the handler's read", path: "/webhooks/tg-eu",
			body:   func() io.Reader { return chunked{bytes.NewReader(make([]byte, 4*testMaxBody))} },
			status: http.StatusRequestEntityTooLarge, calls: 1,
			check: func(t *testing.T, h *readingHook) {
				h.mu.Lock()
				defer h.mu.Unlock()
				if len(h.errs) != 1 {
					t.Fatalf("handler read errors = %v, want one *http.MaxBytesError", h.errs)
				}
				if mbe, ok := errors.AsType[*http.MaxBytesError](h.errs[0]); !ok || mbe.Limit != testMaxBody {
					t.Errorf("handler read error = %v, want *http.MaxBytesError with limit %d", h.errs[0], testMaxBody)
				}
			},
		},
		{
			name: "a draining server refuses webhooks with 503", path: "/webhooks/tg-eu", drain: true,
			body:   func() io.Reader { return strings.NewReader(`{"update_id":1}`) },
			status: http.StatusServiceUnavailable, code: "shutting_down",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hook := &readingHook{}
			f := &fakes{hooks: map[string]http.Handler{"tg-eu": hook}}
			s, url := serve(t, f.options())
			if tt.drain {
				s.Drain()
			}
			resp := do(t, http.MethodPost, url+tt.path, map[string]string{"Content-Type": "application/json"}, tt.body())
			if tt.code != "" {
				resp.wantError(t, tt.status, tt.code)
			} else if resp.status != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.status, tt.status, resp.body)
			}
			if tt.drain && resp.header.Get("Retry-After") == "" {
				t.Errorf("no Retry-After on a draining 503")
			}
			if got := hook.Calls(); got != tt.calls {
				t.Errorf("handler called %d times, want %d", got, tt.calls)
			}
			id := strings.TrimPrefix(tt.path, "/webhooks/")
			if id != "tg-eu" {
				id = httpapi.UnknownConnector
			}
			want := []string{fmt.Sprintf("%s %d", id, tt.status)}
			if got := f.waitWebhookSeen(t, 1); len(got) != 1 || got[0] != want[0] {
				t.Errorf("OnWebhook saw %q, want %q", got, want)
			}
			if tt.check != nil {
				tt.check(t, hook)
			}
		})
	}
}

func TestDrainRefusesNewWork(t *testing.T) {
	f := &fakes{hooks: map[string]http.Handler{"tg-eu": &readingHook{}}, ready: true}
	s, url := serve(t, f.options())
	if got := do(t, http.MethodGet, url+"/readyz", nil, nil).status; got != http.StatusOK {
		t.Fatalf("/readyz before Drain = %d, want 200", got)
	}
	s.Drain()

	resp := do(t, http.MethodPost, url+"/v1/replies", bearer(goodToken), strings.NewReader(replyBody("r-1")))
	resp.wantError(t, http.StatusServiceUnavailable, "shutting_down")
	if resp.header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After on a draining reply 503")
	}
	if len(f.Replies()) != 0 {
		t.Errorf("SubmitReply was called while draining")
	}
	do(t, http.MethodPost, url+"/webhooks/tg-eu", nil, strings.NewReader(`{}`)).wantError(t, http.StatusServiceUnavailable, "shutting_down")
	if got := do(t, http.MethodGet, url+"/readyz", nil, nil).status; got != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", got)
	}
	// Liveness is not readiness: a draining process is alive.
	if got := do(t, http.MethodGet, url+"/healthz", nil, nil).status; got != http.StatusOK {
		t.Errorf("/healthz while draining = %d, want 200", got)
	}
	// Reads keep working while in-flight work finishes.
	if got := do(t, http.MethodGet, url+"/v1/conversations/"+string(convID), bearer(goodToken), nil).status; got != http.StatusNotFound {
		t.Errorf("GET conversation while draining = %d, want the 404 of the fake", got)
	}
}

// TestReadyzBodyAgreesWithStatusWhileDraining: a load balancer reads the
// status, an operator reads the body; while draining both must say "not
// ready", even though NATS and every connector still are.
func TestReadyzBodyAgreesWithStatusWhileDraining(t *testing.T) {
	f := &fakes{ready: true, readyBody: map[string]any{"ready": true, "connectors": map[string]string{"tg-eu": "running"}}}
	s, url := serve(t, f.options())
	readyz := func() (int, map[string]any) {
		t.Helper()
		resp := do(t, http.MethodGet, url+"/readyz", nil, nil)
		var body map[string]any
		if err := json.Unmarshal(resp.body, &body); err != nil {
			t.Fatalf("/readyz body is not a JSON object: %s", resp.body)
		}
		return resp.status, body
	}

	if status, body := readyz(); status != http.StatusOK || body["ready"] != true || body["draining"] != false {
		t.Errorf("before Drain: %d %v, want 200 with ready true, draining false", status, body)
	}
	s.Drain()
	status, body := readyz()
	if status != http.StatusServiceUnavailable {
		t.Errorf("while draining: status %d, want 503", status)
	}
	if body["ready"] != false || body["draining"] != true {
		t.Errorf("while draining: body %v, want ready false and draining true", body)
	}
	if _, ok := body["connectors"]; !ok {
		t.Errorf("while draining: body %v lost the connectors' states", body)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		ready  bool
		body   map[string]any
		status int
		want   string // JSON body
	}{
		{"healthz is always ok", "/healthz", false, nil, http.StatusOK, `{"status":"ok"}`},
		{"readyz is 200 with the description when ready", "/readyz", true,
			map[string]any{"connectors": map[string]string{"tg-eu": "running"}},
			http.StatusOK, `{"connectors":{"tg-eu":"running"},"draining":false,"ready":true}`},
		{"readyz is 503 with the description when not ready", "/readyz", false,
			map[string]any{"nats": map[string]bool{"connected": false}},
			http.StatusServiceUnavailable, `{"draining":false,"nats":{"connected":false},"ready":false}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakes{ready: tt.ready, readyBody: tt.body}
			_, url := serve(t, f.options())
			resp := do(t, http.MethodGet, url+tt.path, nil, nil)
			if resp.status != tt.status {
				t.Fatalf("status = %d, want %d", resp.status, tt.status)
			}
			if ct := resp.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if got := strings.TrimSpace(string(resp.body)); got != tt.want {
				t.Errorf("body = %s, want %s", got, tt.want)
			}
		})
	}
}

// readCloser records whether it was closed.
type readCloser struct {
	io.Reader
	closed bool
}

func (r *readCloser) Close() error { r.closed = true; return nil }

func TestGetMedia(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n fake image bytes")
	tests := []struct {
		name  string
		id    string
		media func(rc *readCloser) func(normalize.MediaID) (io.ReadCloser, string, int64, error)
		check func(t *testing.T, f *fakes, rc *readCloser, resp *response)
	}{
		{
			name: "stored media is streamed with its content type",
			id:   string(mediaID),
			media: func(rc *readCloser) func(normalize.MediaID) (io.ReadCloser, string, int64, error) {
				return func(id normalize.MediaID) (io.ReadCloser, string, int64, error) {
					if id != mediaID {
						return nil, "", 0, fmt.Errorf("asked for %s: %w", id, httpapi.ErrNotFound)
					}
					return rc, "image/png", int64(len(png)), nil
				}
			},
			check: func(t *testing.T, _ *fakes, rc *readCloser, resp *response) {
				if resp.status != http.StatusOK {
					t.Fatalf("status = %d, want 200; body %s", resp.status, resp.body)
				}
				if !bytes.Equal(resp.body, png) {
					t.Errorf("body = %q, want %q", resp.body, png)
				}
				for k, want := range map[string]string{
					"Content-Type":           "image/png",
					"Content-Length":         fmt.Sprint(len(png)),
					"X-Content-Type-Options": "nosniff",
				} {
					if got := resp.header.Get(k); got != want {
						t.Errorf("%s = %q, want %q", k, got, want)
					}
				}
				if !rc.closed {
					t.Errorf("the media reader was not closed")
				}
			},
		},
		{
			name: "media of unknown type and size is octet-stream",
			id:   string(mediaID),
			media: func(rc *readCloser) func(normalize.MediaID) (io.ReadCloser, string, int64, error) {
				return func(normalize.MediaID) (io.ReadCloser, string, int64, error) { return rc, "", -1, nil }
			},
			check: func(t *testing.T, _ *fakes, _ *readCloser, resp *response) {
				if resp.status != http.StatusOK || !bytes.Equal(resp.body, png) {
					t.Fatalf("status = %d, body %q", resp.status, resp.body)
				}
				if got := resp.header.Get("Content-Type"); got != "application/octet-stream" {
					t.Errorf("Content-Type = %q, want application/octet-stream", got)
				}
			},
		},
		{
			name: "a malformed id is a 404 without a lookup",
			id:   "not-a-media-id",
			check: func(t *testing.T, f *fakes, _ *readCloser, resp *response) {
				resp.wantError(t, http.StatusNotFound, "unknown_media")
				if f.MediaCalls() != 0 {
					t.Errorf("Media was called %d times for a malformed id", f.MediaCalls())
				}
			},
		},
		{
			name: "an id of another kind is a 404 without a lookup",
			id:   string(convID),
			check: func(t *testing.T, f *fakes, _ *readCloser, resp *response) {
				resp.wantError(t, http.StatusNotFound, "unknown_media")
				if f.MediaCalls() != 0 {
					t.Errorf("Media was called %d times for a conversation id", f.MediaCalls())
				}
			},
		},
		{
			name: "media nobody stored is a 404",
			id:   string(mediaID),
			check: func(t *testing.T, f *fakes, _ *readCloser, resp *response) {
				resp.wantError(t, http.StatusNotFound, "unknown_media")
				if f.MediaCalls() != 1 {
					t.Errorf("Media was called %d times, want 1", f.MediaCalls())
				}
			},
		},
		{
			name: "an unreachable store is a 503",
			id:   string(mediaID),
			media: func(*readCloser) func(normalize.MediaID) (io.ReadCloser, string, int64, error) {
				return func(normalize.MediaID) (io.ReadCloser, string, int64, error) {
					return nil, "", 0, errors.New("object store: nats: timeout")
				}
			},
			check: func(t *testing.T, _ *fakes, _ *readCloser, resp *response) {
				resp.wantError(t, http.StatusServiceUnavailable, "unavailable")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &readCloser{Reader: bytes.NewReader(png)}
			f := &fakes{}
			if tt.media != nil {
				f.media = tt.media(rc)
			}
			_, url := serve(t, f.options())
			resp := do(t, http.MethodGet, url+"/v1/media/"+tt.id, bearer(goodToken), nil)
			tt.check(t, f, rc, resp)
		})
	}
}

func TestGetConversation(t *testing.T) {
	entry := &directory.Entry{
		ConversationID: convID, Platform: "telegram", Connector: "tg-eu", Region: "eu",
		Account: "1", PlatformID: "42", Kind: normalize.KindDirect, Title: "María",
		LastInboundAt: time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC), Reachable: true,
	}
	tests := []struct {
		name  string
		id    normalize.ConversationID
		conv  func(normalize.ConversationID) (*directory.Entry, error)
		check func(t *testing.T, resp *response)
	}{
		{
			name: "a known conversation is its directory entry",
			id:   convID,
			conv: func(id normalize.ConversationID) (*directory.Entry, error) {
				if id != convID {
					return nil, directory.ErrUnknown
				}
				return entry, nil
			},
			check: func(t *testing.T, resp *response) {
				if resp.status != http.StatusOK {
					t.Fatalf("status = %d, want 200; body %s", resp.status, resp.body)
				}
				var got directory.Entry
				if err := json.Unmarshal(resp.body, &got); err != nil {
					t.Fatal(err)
				}
				if got.ConversationID != entry.ConversationID || got.PlatformID != "42" || got.Kind != normalize.KindDirect ||
					!got.LastInboundAt.Equal(entry.LastInboundAt) || !got.Reachable {
					t.Errorf("entry = %+v, want %+v", got, *entry)
				}
			},
		},
		{
			name: "an unknown conversation is a 404",
			id:   convID,
			conv: func(id normalize.ConversationID) (*directory.Entry, error) {
				return nil, fmt.Errorf("conversation %s: %w", id, directory.ErrUnknown)
			},
			check: func(t *testing.T, resp *response) { resp.wantError(t, http.StatusNotFound, "unknown_conversation") },
		},
		{
			name:  "not found is a 404 too",
			id:    convID,
			conv:  func(normalize.ConversationID) (*directory.Entry, error) { return nil, httpapi.ErrNotFound },
			check: func(t *testing.T, resp *response) { resp.wantError(t, http.StatusNotFound, "unknown_conversation") },
		},
		{
			name: "an unreachable directory is a 503",
			id:   convID,
			conv: func(normalize.ConversationID) (*directory.Entry, error) {
				return nil, fmt.Errorf("reading directory entry: %w", bus.ErrNotDurable)
			},
			check: func(t *testing.T, resp *response) { resp.wantError(t, http.StatusServiceUnavailable, "unavailable") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakes{conv: tt.conv}
			_, url := serve(t, f.options())
			tt.check(t, do(t, http.MethodGet, url+"/v1/conversations/"+string(tt.id), bearer(goodToken), nil))
		})
	}
}

func TestRequestID(t *testing.T) {
	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		sent string
		want func(got string) bool
	}{
		{"a caller's id is echoed", "req-123", func(got string) bool { return got == "req-123" }},
		{"a missing id is generated", "", hexID.MatchString},
		{"an overlong id is replaced", long, hexID.MatchString},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := make(chan string, 1)
			f := &fakes{hooks: map[string]http.Handler{"tg-eu": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- httpapi.RequestID(r.Context())
			})}}
			_, url := serve(t, f.options())
			var h map[string]string
			if tt.sent != "" {
				h = map[string]string{"X-Request-Id": tt.sent}
			}
			// Answers of the server itself and of handlers carry it alike.
			for _, path := range []string{"/healthz", "/v1/replies", "/webhooks/tg-eu"} {
				method := http.MethodGet
				if path != "/healthz" {
					method = http.MethodPost
				}
				resp := do(t, method, url+path, h, strings.NewReader("{}"))
				if got := resp.header.Get("X-Request-Id"); !tt.want(got) {
					t.Errorf("%s: X-Request-Id = %q", path, got)
				}
				if path == "/webhooks/tg-eu" {
					if got := <-seen; got != resp.header.Get("X-Request-Id") {
						t.Errorf("handler saw request id %q, answer carries %q", got, resp.header.Get("X-Request-Id"))
					}
				}
			}
		})
	}
	t.Run("each request gets its own id", func(t *testing.T) {
		_, url := serve(t, (&fakes{}).options())
		a := do(t, http.MethodGet, url+"/healthz", nil, nil).header.Get("X-Request-Id")
		b := do(t, http.MethodGet, url+"/healthz", nil, nil).header.Get("X-Request-Id")
		if a == b {
			t.Errorf("two requests got the same generated id %q", a)
		}
	})
}

// TestAFloodOfUnknownConnectorIdsAddsNoMetricSeries: metric labels come
// from the configuration only; 5,000 made-up ids are one series.
func TestAFloodOfUnknownConnectorIdsAddsNoMetricSeries(t *testing.T) {
	m := metrics.New()
	f := &fakes{hooks: map[string]http.Handler{"tg-eu": &readingHook{}}}
	opts := f.options()
	opts.OnWebhook = m.WebhookAnswered
	opts.Metrics = m.Handler()
	_, url := serve(t, opts)
	series := func() int {
		resp := do(t, http.MethodGet, url+"/metrics", nil, nil)
		n := 0
		for _, line := range strings.Split(string(resp.body), "\n") {
			if strings.HasPrefix(line, "parley_webhook_requests_total{") {
				n++
			}
		}
		return n
	}
	do(t, http.MethodPost, url+"/webhooks/tg-eu", nil, strings.NewReader("{}"))
	do(t, http.MethodPost, url+"/webhooks/never-configured", nil, nil)
	before := series()
	for i := range 5000 {
		do(t, http.MethodPost, fmt.Sprintf("%s/webhooks/x%d", url, i), nil, nil)
	}
	if after := series(); after != before || before != 2 {
		t.Errorf("parley_webhook_requests_total has %d series after 5,000 unknown ids (%d before), want 2: one for tg-eu, one for every unknown id", after, before)
	}
}
