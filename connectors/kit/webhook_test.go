package kit_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

// hook is a webhook handler under test, served by a real HTTP server.
type hook struct {
	srv *httptest.Server
	pub *publisher
	in  inbound
}

// newHook serves a Webhook that accepts every request, maps any JSON body
// to one update of event "e1" and stores it through pub; edit changes it
// before it serves.
func newHook(t *testing.T, pub *publisher, edit func(*kit.Webhook)) *hook {
	t.Helper()
	in := newInbound(t, pub, &rejects{})
	w := &kit.Webhook{
		Budget: 5 * time.Second,
		Verify: func(*http.Request, []byte) error { return nil },
		Parse: func(body []byte) ([]kit.Update, error) {
			if !json.Valid(body) {
				return nil, errors.New("not JSON")
			}
			return []kit.Update{update("u1", "e1")}, nil
		},
		Inbound: in.in,
	}
	if edit != nil {
		edit(w)
	}
	srv := httptest.NewServer(w)
	t.Cleanup(srv.Close)
	return &hook{srv: srv, pub: pub, in: in}
}

// answer is what a client read back.
type answer struct {
	status int
	header http.Header
	body   string
}

// do sends a request and reads the whole answer, within 5s.
func (h *hook) do(t *testing.T, method, body string) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, h.srv.URL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestWebhookPost(t *testing.T) {
	for _, tt := range []struct {
		name   string
		edit   func(*kit.Webhook)
		answer func(context.Context, []*normalize.Event) error
		body   string

		wantStatus int
		check      func(t *testing.T, a answer, h *hook)
	}{
		{
			name:       "a body over MaxBody is 413 and stores nothing",
			edit:       func(w *kit.Webhook) { w.MaxBody = 8 },
			body:       `{"a":"123456"}`,
			wantStatus: http.StatusRequestEntityTooLarge,
			check:      storesNothing,
		},
		{
			name: "a request that is not the platform's is 401, stores nothing and keeps the reason to the log",
			edit: func(w *kit.Webhook) {
				w.Verify = func(*http.Request, []byte) error {
					return errors.New("signature sha256=c0ffee does not match secret s3cr3t")
				}
			},
			body:       `{}`,
			wantStatus: http.StatusUnauthorized,
			check: func(t *testing.T, a answer, h *hook) {
				storesNothing(t, a, h)
				for _, leak := range []string{"c0ffee", "s3cr3t", "does not match"} {
					if strings.Contains(a.body, leak) {
						t.Errorf("401 body %q shows the verification error (%q)", a.body, leak)
					}
				}
			},
		},
		{
			name:       "a malformed body is 400, stores nothing and counts as failed",
			body:       `{"update_id":`,
			wantStatus: http.StatusBadRequest,
			check: func(t *testing.T, a answer, h *hook) {
				storesNothing(t, a, h)
				if got, want := h.in.in.Stats(), (connectors.InboundStats{Received: 1, Failed: 1}); got != want {
					t.Errorf("Stats = %+v, want %+v", got, want)
				}
			},
		},
		{
			name:       "storage that is down is 503 with Retry-After",
			answer:     failing(errDown),
			body:       `{}`,
			wantStatus: http.StatusServiceUnavailable,
			check:      retryLater,
		},
		{
			name: "a ledger lookup that fails is 503 and stores nothing",
			edit: func(w *kit.Webhook) {
				w.Resolve = func(context.Context, []kit.Update) error { return errors.New("ledger unavailable") }
			},
			body:       `{}`,
			wantStatus: http.StatusServiceUnavailable,
			check: func(t *testing.T, a answer, h *hook) {
				retryLater(t, a, h)
				storesNothing(t, a, h)
			},
		},
		{
			name:       "stored updates are 200 with the default OK body",
			body:       `{}`,
			wantStatus: http.StatusOK,
			check: func(t *testing.T, a answer, h *hook) {
				wantBody(t, a, `{"ok":true}`)
				if got := h.pub.Calls(); !slices.EqualFunc(got, [][]normalize.EventID{{"e1"}}, slices.Equal) {
					t.Errorf("Publish calls = %v, want the one event stored once", got)
				}
			},
		},
		{
			name:       "stored updates are 200 with the platform's OK body",
			edit:       func(w *kit.Webhook) { w.OK = []byte(`{"status":"received"}`) },
			body:       `{}`,
			wantStatus: http.StatusOK,
			check:      func(t *testing.T, a answer, _ *hook) { wantBody(t, a, `{"status":"received"}`) },
		},
		{
			name: "updates completed by Resolve are stored as resolved",
			edit: func(w *kit.Webhook) {
				w.Resolve = func(_ context.Context, updates []kit.Update) error {
					updates[0].Events[0].ID = "e1-resolved"
					return nil
				}
			},
			body:       `{}`,
			wantStatus: http.StatusOK,
			check: func(t *testing.T, _ answer, h *hook) {
				if got := h.pub.Calls(); !slices.EqualFunc(got, [][]normalize.EventID{{"e1-resolved"}}, slices.Equal) {
					t.Errorf("Publish calls = %v, want the resolved event", got)
				}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t, &publisher{answer: tt.answer}, tt.edit)
			a := h.do(t, http.MethodPost, tt.body)
			if a.status != tt.wantStatus {
				t.Fatalf("POST = %d %s, want %d", a.status, a.body, tt.wantStatus)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			tt.check(t, a, h)
		})
	}
}

func storesNothing(t *testing.T, _ answer, h *hook) {
	t.Helper()
	if got := h.pub.Calls(); len(got) != 0 {
		t.Errorf("Publish calls = %v, want none", got)
	}
}

func retryLater(t *testing.T, a answer, _ *hook) {
	t.Helper()
	if a.header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After (headers %v)", a.header)
	}
}

func wantBody(t *testing.T, a answer, want string) {
	t.Helper()
	if a.body != want {
		t.Errorf("body = %s, want %s", a.body, want)
	}
}

func TestWebhookOtherMethods(t *testing.T) {
	const challenge = "1158201444"
	handshake := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Query().Get("challenge"))
	}
	for _, tt := range []struct {
		name       string
		handshake  func(http.ResponseWriter, *http.Request)
		method     string
		wantStatus int
		wantAllow  string
	}{
		{"GET is the platform's handshake", handshake, http.MethodGet, http.StatusOK, ""},
		{"GET without a handshake is 405 allowing POST", nil, http.MethodGet, http.StatusMethodNotAllowed, "POST"},
		{"PUT is 405 allowing POST and the handshake's GET", handshake, http.MethodPut, http.StatusMethodNotAllowed, "POST, GET"},
		{"DELETE without a handshake is 405 allowing POST", nil, http.MethodDelete, http.StatusMethodNotAllowed, "POST"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t, &publisher{}, func(w *kit.Webhook) { w.Handshake = tt.handshake })
			h.srv.URL += "?challenge=" + challenge
			a := h.do(t, tt.method, "")
			if a.status != tt.wantStatus {
				t.Fatalf("%s = %d %s, want %d", tt.method, a.status, a.body, tt.wantStatus)
			}
			if got := a.header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
			if tt.wantStatus == http.StatusOK && a.body != challenge {
				t.Errorf("handshake body = %q, want the challenge %s", a.body, challenge)
			}
			storesNothing(t, a, h)
		})
	}
}

func TestWebhookAnswersBeforeAfterRuns(t *testing.T) {
	release := make(chan struct{})
	ran := make(chan []kit.Update, 1)
	var deadline time.Duration
	h := newHook(t, &publisher{}, func(w *kit.Webhook) {
		w.After = func(ctx context.Context, updates []kit.Update) {
			if d, ok := ctx.Deadline(); ok {
				deadline = time.Until(d)
			}
			<-release
			ran <- updates
		}
	})
	// Registered after the server's Close, so it runs first: Close waits
	// for the handler.
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	a := h.do(t, http.MethodPost, `{}`)
	if a.status != http.StatusOK || a.body != `{"ok":true}` {
		t.Fatalf("POST = %d %s while After runs, want 200 {\"ok\":true}", a.status, a.body)
	}
	close(release)
	select {
	case updates := <-ran:
		if len(updates) != 1 || updates[0].ID != "u1" {
			t.Errorf("After got %+v, want the stored update u1", updates)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("After did not finish within 5s of its release")
	}
	if deadline <= 0 || deadline > kit.FollowUpTimeout {
		t.Errorf("After's context ends in %s, want within FollowUpTimeout (%s)", deadline, kit.FollowUpTimeout)
	}
}

func TestWebhookAnswers503WithinItsBudget(t *testing.T) {
	const budget = 300 * time.Millisecond
	blocked := func(ctx context.Context, _ []*normalize.Event) error {
		<-ctx.Done()
		return ctx.Err()
	}
	h := newHook(t, &publisher{answer: blocked}, func(w *kit.Webhook) { w.Budget = budget })

	begin := time.Now()
	a := h.do(t, http.MethodPost, `{}`)
	took := time.Since(begin)
	if a.status != http.StatusServiceUnavailable {
		t.Fatalf("POST = %d %s, want 503", a.status, a.body)
	}
	// Deadline(budget) is 150ms; the rest of the budget is the margin for
	// the answer to reach the platform before it gives up.
	if took >= budget {
		t.Errorf("503 after %s, want it within the budget of %s (work stops at %s)", took, budget, kit.Deadline(budget))
	}
	if !strings.Contains(a.body, "answer budget") {
		t.Errorf("503 body %s, want it to say the answer budget ran out", a.body)
	}
	retryLater(t, a, h)
	if got := h.in.health.Get().State; got == normalize.StateDegraded {
		t.Error("health degraded by a slow request: storage did not fail, the budget ran out")
	}
}

func TestDeadline(t *testing.T) {
	for _, tt := range []struct {
		budget, want time.Duration
	}{
		{10 * time.Second, 9 * time.Second},              // a tenth
		{5 * time.Second, 4500 * time.Millisecond},       // a tenth
		{2 * time.Second, 1800 * time.Millisecond},       // a tenth is 200ms exactly
		{time.Second, 800 * time.Millisecond},            // at least 200ms
		{300 * time.Millisecond, 150 * time.Millisecond}, // never less than half
		{100 * time.Millisecond, 50 * time.Millisecond},  // never less than half
		{0, 4500 * time.Millisecond},                     // DefaultBudget
	} {
		if got := kit.Deadline(tt.budget); got != tt.want {
			t.Errorf("Deadline(%s) = %s, want %s", tt.budget, got, tt.want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	for _, tt := range []struct {
		name       string
		write      func(http.ResponseWriter)
		wantStatus int
		wantBody   string
	}{
		{"WriteError answers an error object", func(w http.ResponseWriter) { kit.WriteError(w, http.StatusTeapot, "short and stout") },
			http.StatusTeapot, `{"error":"short and stout"}`},
		{"WriteJSON encodes the value", func(w http.ResponseWriter) { kit.WriteJSON(w, http.StatusOK, map[string]int{"n": 1}) },
			http.StatusOK, `{"n":1}`},
		{"WriteJSON of what cannot be encoded is 500", func(w http.ResponseWriter) { kit.WriteJSON(w, http.StatusOK, func() {}) },
			http.StatusInternalServerError, `{"error":"encoding the answer failed"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			tt.write(rec)
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody {
				t.Errorf("answer = %d %s, want %d %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			if got, want := rec.Header().Get("Content-Length"), strconv.Itoa(len(tt.wantBody)); got != want {
				t.Errorf("Content-Length = %s, want %s", got, want)
			}
		})
	}
}
