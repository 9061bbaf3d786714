package fakechatsim_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/simkit"
)

var maria = fakechatsim.User{ID: "cust_412", Name: "María López"}

func start(t *testing.T, opts fakechatsim.Options) *fakechatsim.Server {
	t.Helper()
	if opts.Accounts == nil {
		opts.Accounts = []fakechatsim.Account{{ID: "1001", Token: "tok-1"}, {ID: "1002", Token: "tok-2"}}
	}
	s, err := fakechatsim.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// send calls the messages API as a client would.
func send(t *testing.T, baseURL, account, token string, body string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, baseURL+"/v1/"+account+"/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, resp.Header, out
}

func errorCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// receiver is a webhook endpoint verifying signatures like the connector,
// answering from a script of statuses and then 200.
type receiver struct {
	mu      sync.Mutex
	secret  string
	answers []int
	bodies  [][]byte
	valid   []bool
	srv     *httptest.Server
}

func newReceiver(t *testing.T, secret string, answers ...int) *receiver {
	r := &receiver{secret: secret, answers: answers}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		m := hmac.New(sha256.New, []byte(r.secret))
		m.Write(body)
		ok := req.Header.Get("X-Fakechat-Signature") == "sha256="+hex.EncodeToString(m.Sum(nil))
		r.mu.Lock()
		r.bodies = append(r.bodies, body)
		r.valid = append(r.valid, ok)
		status := http.StatusOK
		if !ok {
			status = http.StatusUnauthorized
		} else if len(r.answers) > 0 {
			status, r.answers = r.answers[0], r.answers[1:]
		}
		r.mu.Unlock()
		if req.Method == http.MethodGet {
			_, _ = w.Write([]byte(req.URL.Query().Get("challenge")))
			return
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() ([][]byte, []bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...), append([]bool(nil), r.valid...)
}

func TestSendIsAcceptedAndRecordedInOrder(t *testing.T) {
	s := start(t, fakechatsim.Options{})
	s.AddCustomer("1001", maria.ID)
	s.AddCustomer("1002", maria.ID)
	status, _, body := send(t, s.URL, "1001", "tok-1", `{"to":"cust_412","text":"one","choices":[{"id":"y","title":"Yes"}],"reply_to":"fm_in_1","tag":"HUMAN_AGENT"}`)
	if status != 200 || body["id"] != "fm_out_1" {
		t.Fatalf("%d %v", status, body)
	}
	send(t, s.URL, "1002", "tok-2", `{"to":"cust_412","attachment":{"url":"https://files.example/a.png"}}`)
	send(t, s.URL, "1001", "tok-1", `{"to":"cust_412","text":"two"}`)

	got := s.Sent("1001", maria.ID)
	if len(got) != 2 || got[0].Text != "one" || got[1].Text != "two" || got[0].ReplyTo != "fm_in_1" || got[0].Tag != "HUMAN_AGENT" || got[0].Choices[0].Title != "Yes" {
		t.Fatalf("sent %+v", got)
	}
	if other := s.Sent("1002", maria.ID); len(other) != 1 || other[0].ID != "fm_out_2" || other[0].AttachmentURL != "https://files.example/a.png" {
		t.Fatalf("sent on 1002 %+v", other)
	}
	if all, err := s.WaitSent(ctx(t), 3); err != nil || len(all) != 3 {
		t.Fatalf("WaitSent: %v %v", all, err)
	}
	if m, ok := s.SentMessage("fm_out_3"); !ok || m.Text != "two" {
		t.Fatalf("SentMessage = %+v %v", m, ok)
	}
	if n := s.Requests().Count(simkit.Match("POST", "/v1/")); n != 3 {
		t.Fatalf("%d requests recorded", n)
	}
}

func TestSendRefusals(t *testing.T) {
	tests := []struct {
		name    string
		account string
		token   string
		body    string
		prepare func(s *fakechatsim.Server)
		status  int
		code    string
	}{
		{"a wrong token", "1001", "tok-2", `{"to":"cust_412","text":"x"}`, nil, 401, fakechatsim.CodeUnauthorized},
		{"an unknown account", "4242", "tok-1", `{"to":"cust_412","text":"x"}`, nil, 404, fakechatsim.CodeNotFound},
		{"a customer who never wrote", "1001", "tok-1", `{"to":"stranger","text":"x"}`, nil, 404, fakechatsim.CodeNoUser},
		{"a blocked customer", "1001", "tok-1", `{"to":"cust_412","text":"x"}`, func(s *fakechatsim.Server) { s.Block(maria.ID) }, 403, fakechatsim.CodeBlocked},
		{"not JSON", "1001", "tok-1", `{`, nil, 400, fakechatsim.CodeInvalid},
		{"nothing to send", "1001", "tok-1", `{"to":"cust_412"}`, nil, 400, fakechatsim.CodeInvalid},
		{"text over 2000 characters", "1001", "tok-1", `{"to":"cust_412","text":"` + strings.Repeat("é", 2001) + `"}`, nil, 400, fakechatsim.CodeInvalid},
		{"a title over 20 characters", "1001", "tok-1", `{"to":"cust_412","text":"x","choices":[{"id":"a","title":"` + strings.Repeat("t", 21) + `"}]}`, nil, 400, fakechatsim.CodeInvalid},
		{"an unknown tag", "1001", "tok-1", `{"to":"cust_412","text":"x","tag":"PROMO"}`, nil, 400, fakechatsim.CodeInvalid},
		{"a relative attachment url", "1001", "tok-1", `{"to":"cust_412","attachment":{"url":"/a.png"}}`, nil, 400, fakechatsim.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, fakechatsim.Options{})
			s.AddCustomer("1001", maria.ID)
			if tt.prepare != nil {
				tt.prepare(s)
			}
			status, _, body := send(t, s.URL, tt.account, tt.token, tt.body)
			if status != tt.status || errorCode(body) != tt.code {
				t.Fatalf("%d %v, want %d %s", status, body, tt.status, tt.code)
			}
			if n := len(s.AllSent()); n != 0 {
				t.Fatalf("a refused send was recorded")
			}
		})
	}
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	s := start(t, fakechatsim.Options{RateLimit: &simkit.Limit{PerSecond: 1, Burst: 2}})
	s.AddCustomer("1001", maria.ID)
	s.AddCustomer("1002", maria.ID)
	for range 2 {
		if status, _, _ := send(t, s.URL, "1001", "tok-1", `{"to":"cust_412","text":"x"}`); status != 200 {
			t.Fatalf("a send within the burst: %d", status)
		}
	}
	status, h, body := send(t, s.URL, "1001", "tok-1", `{"to":"cust_412","text":"x"}`)
	if status != 429 || h.Get("Retry-After") != "1" || errorCode(body) != fakechatsim.CodeRateLimited {
		t.Fatalf("over the limit: %d %q %v", status, h.Get("Retry-After"), body)
	}
	// Each account has its own budget.
	if status, _, _ := send(t, s.URL, "1002", "tok-2", `{"to":"cust_412","text":"x"}`); status != 200 {
		t.Fatalf("another account: %d", status)
	}
	if n := len(s.AllSent()); n != 3 {
		t.Fatalf("%d recorded, want 3", n)
	}
}

func TestInjectedFailuresAreConsumedOnce(t *testing.T) {
	s := start(t, fakechatsim.Options{RateLimit: &simkit.Limit{}})
	s.AddCustomer("1001", maria.ID)
	s.FailNext(fakechatsim.KeySend, 1, fakechatsim.RateLimited(3*time.Second))
	s.FailNext(fakechatsim.KeySend, 2, fakechatsim.Unavailable())
	var statuses []int
	for range 4 {
		status, h, _ := send(t, s.URL, "1001", "tok-1", `{"to":"cust_412","text":"x"}`)
		statuses = append(statuses, status)
		if status == 429 && h.Get("Retry-After") != "3" {
			t.Errorf("Retry-After %q", h.Get("Retry-After"))
		}
	}
	if want := []int{429, 503, 503, 200}; !equal(statuses, want) {
		t.Fatalf("statuses %v, want %v", statuses, want)
	}
	if n := len(s.AllSent()); n != 1 {
		t.Fatalf("%d recorded", n)
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSendDelayEndsWithClose(t *testing.T) {
	s, err := fakechatsim.Start(fakechatsim.Options{SendDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s.AddCustomer(fakechatsim.DefaultAccount, maria.ID)
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/v1/"+fakechatsim.DefaultAccount+"/messages", strings.NewReader(`{"to":"cust_412","text":"x"}`))
		req.Header.Set("Authorization", "Bearer "+fakechatsim.DefaultToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := s.Requests().Wait(ctx(t), 1, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if status := <-done; status == 200 {
		t.Fatal("a send was accepted after Close")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Close waited for the delay")
	}
}

func TestMediaDownloads(t *testing.T) {
	s := start(t, fakechatsim.Options{})
	att := s.AddMedia("1001", []byte("png bytes"), "image/png", "photo.png")
	if att.Kind != "image" || att.Size != 9 || !strings.HasPrefix(att.URL, s.URL+"/media/") {
		t.Fatalf("attachment %+v", att)
	}
	get := func(token string) (int, string, http.Header) {
		req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, att.URL, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	if status, body, h := get("tok-1"); status != 200 || body != "png bytes" || h.Get("Content-Type") != "image/png" || !strings.Contains(h.Get("Content-Disposition"), "photo.png") {
		t.Fatalf("download: %d %q %v", status, body, h)
	}
	if status, _, _ := get("tok-2"); status != 401 {
		t.Fatalf("another account's token: %d", status)
	}
	s.FailNext(fakechatsim.KeyMedia, 1, fakechatsim.InternalError())
	if status, _, _ := get("tok-1"); status != 500 {
		t.Fatalf("injected: %d", status)
	}
	s.RemoveMedia(att.URL)
	if status, _, _ := get("tok-1"); status != 410 {
		t.Fatalf("removed: %d", status)
	}
}

func TestPushesAreSignedWithTheAppSecret(t *testing.T) {
	s := start(t, fakechatsim.Options{AppSecret: "the-secret"})
	r := newReceiver(t, "the-secret")
	s.Attach(r.srv.URL)
	if _, err := s.Push(ctx(t), "1001", s.Text(maria, "hi")); err != nil {
		t.Fatal(err)
	}
	if out, err := s.PushForged(ctx(t), "1001", s.Text(maria, "forged")); !errors.Is(err, simkit.ErrNotAcked) || len(out.Attempts) != 1 {
		t.Fatalf("forged push: %+v %v", out, err)
	}
	_, valid := r.got()
	if len(valid) != 2 || !valid[0] || valid[1] {
		t.Fatalf("signatures valid %v, want [true false]", valid)
	}
	if s.Acked() != 1 {
		t.Fatalf("Acked() = %d", s.Acked())
	}
	if got := fakechatsim.Signature("k", []byte("b")); !strings.HasPrefix(got, "sha256=") || len(got) != 7+64 {
		t.Fatalf("Signature = %q", got)
	}
}

func TestPushFollowsTheRetrySchedule(t *testing.T) {
	retries := []time.Duration{30 * time.Millisecond, 60 * time.Millisecond, time.Hour}
	s := start(t, fakechatsim.Options{Retries: retries})
	r := newReceiver(t, fakechatsim.DefaultAppSecret, 503, 500)
	s.Attach(r.srv.URL)
	out, err := s.Push(ctx(t), "1001", s.Text(maria, "hi"))
	if err != nil || len(out.Attempts) != 3 {
		t.Fatalf("push: %+v %v", out, err)
	}
	for i := 1; i < 3; i++ {
		if gap := out.Attempts[i].At.Sub(out.Attempts[i-1].At); gap < retries[i-1] {
			t.Errorf("attempt %d after %s, before the scheduled %s", i+1, gap, retries[i-1])
		}
	}
	bodies, _ := r.got()
	if !bytes.Equal(bodies[0], bodies[2]) {
		t.Fatal("a retry changed the body")
	}

	if _, err := s.Redeliver(ctx(t)); err != nil {
		t.Fatal(err)
	}
	bodies, _ = r.got()
	if !bytes.Equal(bodies[3], bodies[0]) {
		t.Fatal("the redelivery is not the same body")
	}
}

func TestBodiesFollowTheWireFormat(t *testing.T) {
	s := start(t, fakechatsim.Options{})
	r := newReceiver(t, fakechatsim.DefaultAppSecret)
	s.Attach(r.srv.URL)
	msg := s.Message(maria, "look", s.AddMedia("1001", []byte("x"), "video/mp4", "v.mp4"))
	events := []fakechatsim.Event{
		msg,
		s.Location(maria, 52.5, 13.4),
		s.Edit(maria, msg.ID, "look!"),
		s.Reaction(maria, "fm_out_1", "👍"),
		s.Unreaction(maria, "fm_out_1", "👍"),
		s.Postback(maria, "fm_out_1", "yes", "Yes"),
		s.Delivery(maria, "fm_out_1"),
		s.Read(maria, time.UnixMilli(1795167000000)),
		s.Echo(maria, "from the inbox"),
		s.Failed("fm_out_1", fakechatsim.LateWindowClosed, "window"),
	}
	if _, err := s.PushBatch(ctx(t), fakechatsim.Entry{Account: "1001", Events: events[:5]}, fakechatsim.Entry{Account: "1002", Events: events[5:]}); err != nil {
		t.Fatal(err)
	}
	bodies, _ := r.got()
	var body struct {
		Object string `json:"object"`
		Entry  []struct {
			Account string            `json:"account"`
			Time    int64             `json:"time"`
			Events  []json.RawMessage `json:"events"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bodies[0], &body); err != nil {
		t.Fatal(err)
	}
	if body.Object != "fakechat" || len(body.Entry) != 2 || body.Entry[1].Account != "1002" || body.Entry[0].Time == 0 {
		t.Fatalf("body %s", bodies[0])
	}
	want := []string{
		`"type":"message","ts":`, `"location":{"lat":52.5,"lon":13.4}`, `"type":"edit"`, `"action":"add"`, `"action":"remove"`,
		`"payload":"yes","title":"Yes"`, `"ids":["fm_out_1"]`, `"watermark":1795167000000`, `"to":{"id":"cust_412"`, `"error":{"code":131047`,
	}
	all := append(body.Entry[0].Events, body.Entry[1].Events...)
	var last int64
	for i, ev := range all {
		if !strings.Contains(string(ev), want[i]) {
			t.Errorf("event %d %s lacks %s", i, ev, want[i])
		}
		var e struct {
			TS int64 `json:"ts"`
		}
		_ = json.Unmarshal(ev, &e)
		if e.TS <= last {
			t.Errorf("event %d ts %d is not after %d", i, e.TS, last)
		}
		last = e.TS
	}
	if !strings.Contains(string(all[0]), `"kind":"video"`) || !strings.Contains(string(all[0]), `"mime_type":"video/mp4"`) {
		t.Errorf("attachment %s", all[0])
	}

	if out, err := s.PushMalformed(ctx(t)); err != nil || out.Status() != 200 {
		// The receiver answers 200 to anything signed: the body is what matters.
		t.Fatalf("malformed push: %+v %v", out, err)
	}
	bodies, _ = r.got()
	if json.Valid(bodies[len(bodies)-1]) {
		t.Fatal("the malformed push is valid JSON")
	}
}

func TestPushedCustomersBecomeKnown(t *testing.T) {
	s := start(t, fakechatsim.Options{})
	r := newReceiver(t, fakechatsim.DefaultAppSecret)
	s.Attach(r.srv.URL)
	if _, err := s.Push(ctx(t), "1002", s.Text(maria, "hi")); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := send(t, s.URL, "1002", "tok-2", `{"to":"cust_412","text":"hello"}`); status != 200 {
		t.Fatalf("a send to a customer who wrote: %d", status)
	}
	if status, _, body := send(t, s.URL, "1001", "tok-1", `{"to":"cust_412","text":"hello"}`); status != 404 || errorCode(body) != fakechatsim.CodeNoUser {
		t.Fatalf("a send on an account the customer never wrote to: %d %v", status, body)
	}
}

func TestHandshakeClient(t *testing.T) {
	s := start(t, fakechatsim.Options{})
	if _, _, err := s.Handshake(ctx(t), "t", "c"); err == nil {
		t.Fatal("a handshake without a webhook URL")
	}
	r := newReceiver(t, "")
	s.Attach(r.srv.URL + "/webhooks/fc")
	status, body, err := s.Handshake(ctx(t), s.VerifyToken(), "c-123")
	if err != nil || status != 200 || body != "c-123" {
		t.Fatalf("handshake: %d %q %v", status, body, err)
	}
}
