package metasim

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/meta"
)

// receiver is a webhook endpoint as a connector would be: it checks the
// signature over the raw body before parsing (401), the envelope (400),
// and answers fail first times 500.
type receiver struct {
	secret string
	fail   atomic.Int32

	mu   sync.Mutex
	got  []*meta.Envelope
	code []int
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		if c, ok := meta.Handshake(r.URL.Query(), "verify-me"); ok {
			_, _ = io.WriteString(w, c)
			return
		}
		w.WriteHeader(http.StatusForbidden)
		return
	}
	body, _ := io.ReadAll(r.Body)
	status := http.StatusOK
	var env *meta.Envelope
	if err := meta.VerifySignature([]byte(rc.secret), body, r.Header.Get(meta.SignatureHeader)); err != nil {
		status = http.StatusUnauthorized
	} else if e, err := meta.ParseEnvelope(body); err != nil {
		status = http.StatusBadRequest
	} else if rc.fail.Add(-1) >= 0 {
		status = http.StatusInternalServerError
	} else {
		env = e
	}
	rc.mu.Lock()
	rc.code = append(rc.code, status)
	if env != nil {
		rc.got = append(rc.got, env)
	}
	rc.mu.Unlock()
	w.WriteHeader(status)
}

func (rc *receiver) envelopes() []*meta.Envelope {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*meta.Envelope(nil), rc.got...)
}

func TestPushesAreSignedBatchedAndRetriedUntilAccepted(t *testing.T) {
	rc := &receiver{secret: "secret"}
	rc.fail.Store(2)
	hook := httptest.NewServer(rc)
	defer hook.Close()
	s, c := newSim(t, Options{})
	s.Attach(hook.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	out, err := s.Push(ctx, s.Text("1001", "psid-1", "hola"), s.Text("1002", "psid-2", "hi"))
	if err != nil {
		t.Fatalf("push: %v (%+v)", err, out)
	}
	envs := rc.envelopes()
	if len(envs) != 1 || envs[0].Object != meta.ObjectPage || len(envs[0].Entry) != 2 ||
		envs[0].Entry[1].ID != "1002" || envs[0].Entry[0].Messaging[0].Message.Text != "hola" {
		t.Fatalf("received %+v", envs)
	}
	if n := len(rc.code); n != 3 {
		t.Errorf("%d attempts, want 3 (two 500s, then 200)", n)
	}
	// The pushed message opened the window: a reply goes.
	if _, err := c.Send(ctx, "1001", "tok-1001", text("psid-1", "a reply")); err != nil {
		t.Errorf("reply after the customer's message: %v", err)
	}

	out, err = s.Forged(ctx, s.Text("1001", "psid-1", "forged"))
	if out.Status() != http.StatusUnauthorized {
		t.Errorf("forged push answered %d (%v), want 401", out.Status(), err)
	}
	if len(rc.envelopes()) != 1 {
		t.Error("a forged push was accepted")
	}
}

func TestEchoesCarryTheMetadataOfTheSend(t *testing.T) {
	rc := &receiver{secret: "secret"}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	s, c := newSim(t, Options{Echoes: true})
	s.Attach(hook.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Inbound("1001", "psid-1", time.Now())
	req := text("psid-1", "our reply")
	req.Message.Metadata = "parley:rep-7"
	res, err := c.Send(ctx, "1001", "tok-1001", req)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rc.envelopes()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	envs := rc.envelopes()
	if len(envs) != 1 {
		t.Fatalf("%d echoes, want 1", len(envs))
	}
	m := envs[0].Entry[0].Messaging[0]
	if m.Kind() != meta.KindEcho || m.Message.MID != res.MessageID || m.Message.Metadata != "parley:rep-7" ||
		m.Message.AppID.String() != AppID || m.Sender.ID != "1001" || m.Recipient.ID != "psid-1" {
		t.Errorf("echo %+v / %+v", m, m.Message)
	}
}

func TestHandshake(t *testing.T) {
	hook := httptest.NewServer(&receiver{secret: "secret"})
	defer hook.Close()
	ctx := context.Background()
	if status, echoed, err := Handshake(ctx, hook.Client(), hook.URL, "verify-me"); err != nil || status != 200 || !echoed {
		t.Errorf("the right token: %d echoed=%v %v", status, echoed, err)
	}
	if status, _, err := Handshake(ctx, hook.Client(), hook.URL, "wrong"); err != nil || status != http.StatusForbidden {
		t.Errorf("a wrong token: %d %v, want 403", status, err)
	}
}
