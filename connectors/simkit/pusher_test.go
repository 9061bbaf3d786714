package simkit_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/simkit"
)

// hook is a webhook endpoint that answers from a script, then 200.
type hook struct {
	mu      sync.Mutex
	answers []int // status per request, in order; 0 drops the connection
	bodies  []string
	sigs    []string
	block   chan struct{} // when set, requests wait on it or their context
	srv     *httptest.Server
}

func newHook(t *testing.T, answers ...int) *hook {
	t.Helper()
	h := &hook{answers: answers}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.bodies = append(h.bodies, string(b))
	h.sigs = append(h.sigs, r.Header.Get("X-Sig"))
	status := http.StatusOK
	if len(h.answers) > 0 {
		status, h.answers = h.answers[0], h.answers[1:]
	}
	block := h.block
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if status == 0 {
		simkit.DropConnection(w)
		return
	}
	w.WriteHeader(status)
}

func (h *hook) received() ([]string, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies...), append([]string(nil), h.sigs...)
}

func sign(r *http.Request, body []byte) { r.Header.Set("X-Sig", "sig:"+string(body)) }

func newPusher(t *testing.T, url string, retries ...time.Duration) *simkit.Pusher {
	t.Helper()
	p := simkit.NewPusher(simkit.PusherOptions{Sign: sign, Retries: retries})
	p.SetURL(url)
	t.Cleanup(p.Close)
	return p
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPushSignsEachRequestOverItsBody(t *testing.T) {
	h := newHook(t)
	p := newPusher(t, h.srv.URL)
	out, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`{"n":1}`)})
	if err != nil || !out.Acked || out.Status() != 200 {
		t.Fatalf("Push = %+v, %v", out, err)
	}
	bodies, sigs := h.received()
	if len(bodies) != 1 || bodies[0] != `{"n":1}` || sigs[0] != `sig:{"n":1}` {
		t.Fatalf("received %q signed %q", bodies, sigs)
	}
	if p.Acked() != 1 {
		t.Fatalf("Acked() = %d", p.Acked())
	}
}

func TestPushFollowsTheRetryScheduleUntilAcknowledged(t *testing.T) {
	h := newHook(t, 503, 0, 500) // two errors and a dropped connection, then 200
	retries := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, time.Hour}
	p := newPusher(t, h.srv.URL, retries...)
	out, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`x`)})
	if err != nil || !out.Acked {
		t.Fatalf("Push = %+v, %v", out, err)
	}
	if len(out.Attempts) != 4 {
		t.Fatalf("%d attempts, want 4", len(out.Attempts))
	}
	for i, want := range []int{503, 0, 500, 200} {
		a := out.Attempts[i]
		if a.Status != want || a.Try != i+1 || a.Delivery != 1 {
			t.Errorf("attempt %d = %+v, want status %d", i, a, want)
		}
		if want == 0 && a.Err == nil {
			t.Errorf("attempt %d: a dropped connection has no error", i)
		}
		if i > 0 {
			if gap := a.At.Sub(out.Attempts[i-1].At); gap < retries[i-1] {
				t.Errorf("attempt %d came %s after the previous, before the scheduled %s", i, gap, retries[i-1])
			}
		}
	}
	if got := p.Attempts(); len(got) != 4 {
		t.Fatalf("Attempts() has %d", len(got))
	}
	if p.Acked() != 1 {
		t.Fatalf("Acked() = %d, want 1", p.Acked())
	}
}

func TestPushGivesUpWhenTheScheduleRunsOut(t *testing.T) {
	h := newHook(t, 503, 503, 503, 503)
	p := newPusher(t, h.srv.URL, time.Millisecond, time.Millisecond)
	out, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`x`)})
	if !errors.Is(err, simkit.ErrNotAcked) || out.Acked || len(out.Attempts) != 3 || out.Status() != 503 {
		t.Fatalf("Push = %+v, %v; want 3 attempts and ErrNotAcked", out, err)
	}
	if p.Acked() != 0 {
		t.Fatalf("Acked() = %d", p.Acked())
	}
}

func TestPushOnceMakesOneAttemptWithItsOwnSignature(t *testing.T) {
	h := newHook(t, 401)
	p := newPusher(t, h.srv.URL, time.Millisecond)
	forged := func(r *http.Request, _ []byte) { r.Header.Set("X-Sig", "forged") }
	out, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`x`), Sign: forged, Once: true})
	if !errors.Is(err, simkit.ErrNotAcked) || len(out.Attempts) != 1 || out.Status() != 401 {
		t.Fatalf("Push = %+v, %v", out, err)
	}
	if _, sigs := h.received(); sigs[0] != "forged" {
		t.Fatalf("signed %q", sigs[0])
	}
}

func TestSendDeliversInOrder(t *testing.T) {
	h := newHook(t, 503) // the first push needs a retry; the others must wait for it
	p := newPusher(t, h.srv.URL, 5*time.Millisecond)
	var ds []*simkit.Delivery
	for _, b := range []string{"1", "2", "3"} {
		ds = append(ds, p.Send(simkit.Push{Body: []byte(b)}))
	}
	for i, d := range ds {
		out, err := d.Wait(ctxFor(t))
		if err != nil || out.Delivery != i+1 {
			t.Fatalf("delivery %d: %+v, %v", i, out, err)
		}
	}
	bodies, _ := h.received()
	want := []string{"1", "1", "2", "3"}
	if len(bodies) != len(want) {
		t.Fatalf("received %q, want %q", bodies, want)
	}
	for i := range want {
		if bodies[i] != want[i] {
			t.Fatalf("received %q, want %q", bodies, want)
		}
	}
	if err := p.Flush(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if last, ok := p.Last(); !ok || string(last.Body) != "3" {
		t.Fatalf("Last() = %q, %v", last.Body, ok)
	}
}

func TestPushReturnsWhenItsContextEnds(t *testing.T) {
	h := newHook(t)
	h.block = make(chan struct{})
	defer close(h.block)
	p := newPusher(t, h.srv.URL)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := p.Push(ctx, simkit.Push{Body: []byte(`x`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Push outlived its context")
	}
	// The abandoned push does not hold the queue: the next one goes.
	h.mu.Lock()
	h.block = nil
	h.mu.Unlock()
	if _, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`y`)}); err != nil {
		t.Fatal(err)
	}
}

func TestCloseGivesUpPendingPushesAndWaits(t *testing.T) {
	h := newHook(t)
	h.block = make(chan struct{})
	defer close(h.block)
	p := simkit.NewPusher(simkit.PusherOptions{Retries: []time.Duration{time.Hour}})
	p.SetURL(h.srv.URL)
	inFlight := p.Send(simkit.Push{Body: []byte(`1`)})
	queued := p.Send(simkit.Push{Body: []byte(`2`)})

	closed := make(chan struct{})
	go func() { p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	for _, d := range []*simkit.Delivery{inFlight, queued} {
		select {
		case <-d.Done():
		default:
			t.Fatal("Close returned before a push ended")
		}
		if _, err := d.Wait(t.Context()); !errors.Is(err, simkit.ErrClosed) {
			t.Fatalf("err = %v, want ErrClosed", err)
		}
	}
	if _, err := p.Push(t.Context(), simkit.Push{}); !errors.Is(err, simkit.ErrClosed) {
		t.Fatalf("push after Close: %v", err)
	}
	p.Close() // idempotent
}

func TestPushWithoutURL(t *testing.T) {
	p := simkit.NewPusher(simkit.PusherOptions{})
	defer p.Close()
	if _, err := p.Push(ctxFor(t), simkit.Push{}); !errors.Is(err, simkit.ErrNoURL) {
		t.Fatalf("err = %v, want ErrNoURL", err)
	}
}

func TestDoubling(t *testing.T) {
	b := simkit.Doubling(10*time.Millisecond, 50*time.Millisecond)
	for n, want := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 3: 40 * time.Millisecond, 4: 50 * time.Millisecond, 1000: 50 * time.Millisecond} {
		if got := b(n); got != want {
			t.Errorf("Doubling(10ms, 50ms)(%d) = %s, want %s", n, got, want)
		}
	}
	if got := simkit.Doubling(0, time.Second)(3); got != 0 {
		t.Errorf("Doubling(0, 1s)(3) = %s, want 0", got)
	}
}

func TestBackoffIsTheEndpointsAndOutlastsAGivenUpPush(t *testing.T) {
	h := newHook(t, 503, 503, 503) // the first push fails twice and is given up; the second fails once
	var seen []simkit.Attempt
	p := simkit.NewPusher(simkit.PusherOptions{
		Backoff:     simkit.Doubling(20*time.Millisecond, time.Hour),
		MaxAttempts: 2,
		OnAttempt:   func(a simkit.Attempt) { seen = append(seen, a) },
	})
	p.SetURL(h.srv.URL)
	t.Cleanup(p.Close)

	first, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`1`)})
	if !errors.Is(err, simkit.ErrNotAcked) || len(first.Attempts) != 2 {
		t.Fatalf("first push = %+v, %v; want 2 attempts and ErrNotAcked", first, err)
	}
	second, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`2`)})
	if err != nil || len(second.Attempts) != 2 {
		t.Fatalf("second push = %+v, %v; want acknowledged on its second attempt", second, err)
	}
	all := append(first.Attempts, second.Attempts...)
	// Failures in a row: 1, 2, 3 — the waits double across both pushes.
	for i, want := range []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond} {
		if gap := all[i+1].At.Sub(all[i].At); gap < want {
			t.Errorf("attempt %d came %s after the previous, before the back-off's %s", i+2, gap, want)
		}
	}
	if len(seen) != 4 || seen[3].Status != 200 {
		t.Fatalf("OnAttempt saw %+v", seen)
	}

	// A 2xx reset the back-off: the next failure waits the first step again.
	h.mu.Lock()
	h.answers = []int{500}
	h.mu.Unlock()
	third, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`3`)})
	if err != nil || len(third.Attempts) != 2 {
		t.Fatalf("third push = %+v, %v", third, err)
	}
	// Without the reset it would be the fourth failure in a row: 160ms.
	if gap := third.Attempts[1].At.Sub(third.Attempts[0].At); gap < 20*time.Millisecond || gap >= 160*time.Millisecond {
		t.Errorf("after a reset the retry came %s later, want the first step of 20ms", gap)
	}
}

func TestBackoffWithoutMaxAttemptsRetriesUntilTheContextEnds(t *testing.T) {
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	p := simkit.NewPusher(simkit.PusherOptions{Backoff: simkit.Doubling(time.Millisecond, 5*time.Millisecond)})
	p.SetURL(down.URL)
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := p.Push(ctx, simkit.Push{Body: []byte(`x`)})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
	if err := p.Flush(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(p.Attempts()); n < 5 {
		t.Fatalf("%d attempts in 300ms, want the push retried until its context ended", n)
	}
}

func TestWantedWithdrawsAPushBetweenAttempts(t *testing.T) {
	h := newHook(t, 503, 503)
	var asked int
	p := newPusher(t, h.srv.URL, time.Millisecond, time.Millisecond)
	out, err := p.Push(ctxFor(t), simkit.Push{Body: []byte(`x`), Wanted: func() bool {
		asked++
		return asked < 2 // wanted for the first attempt only
	}})
	if !errors.Is(err, simkit.ErrWithdrawn) || len(out.Attempts) != 1 {
		t.Fatalf("Push = %+v, %v; want one attempt and ErrWithdrawn", out, err)
	}
	if bodies, _ := h.received(); len(bodies) != 1 {
		t.Fatalf("the endpoint got %d requests, want 1", len(bodies))
	}
}
