package simkit_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/simkit"
)

func TestFailuresAreConsumedOnceInOrder(t *testing.T) {
	var fs simkit.Failures
	fs.FailNext("send", 2, simkit.Status(503, nil))
	fs.FailNext(simkit.AnyKey, 1, simkit.Status(500, nil))
	fs.FailNext("send", 1, simkit.Status(429, nil))
	fs.FailNext("other", 0, simkit.Status(400, nil)) // adds nothing

	if got := fs.Pending("send"); got != 4 {
		t.Fatalf("Pending(send) = %d, want 4", got)
	}
	var got []int
	for {
		f, ok := fs.Take("send")
		if !ok {
			break
		}
		got = append(got, f.Status)
	}
	want := []int{503, 503, 500, 429}
	if len(got) != len(want) {
		t.Fatalf("took %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("took %v, want %v", got, want)
		}
	}
	if _, ok := fs.Take("other"); ok {
		t.Fatal("a key without failures took one")
	}
}

func TestFailuresAnyKeyServesTheFirstKeyAsked(t *testing.T) {
	var fs simkit.Failures
	fs.FailNext(simkit.AnyKey, 1, simkit.Drop())
	if _, ok := fs.Take("media"); !ok {
		t.Fatal("AnyKey did not apply to media")
	}
	if _, ok := fs.Take("send"); ok {
		t.Fatal("a failure for one request was taken twice")
	}
	fs.FailNext("send", 3, simkit.Drop())
	fs.Clear()
	if fs.Pending("send") != 0 {
		t.Fatal("Clear left failures")
	}
}

func TestFailuresTakeByAnyOfSeveralKeysKeepsTheOrderAdded(t *testing.T) {
	var fs simkit.Failures
	fs.FailNext("chat:1", 1, simkit.Status(403, nil))
	fs.FailNext("send", 1, simkit.Status(500, nil))
	fs.FailNext("chat:2", 1, simkit.Status(400, nil))

	for _, want := range []int{500, 400} {
		if f, ok := fs.Take("send", "chat:2"); !ok || f.Status != want {
			t.Fatalf("Take(send, chat:2) = %d, %v; want %d", f.Status, ok, want)
		}
	}
	if _, ok := fs.Take("send"); ok {
		t.Fatal("the send rule applied twice")
	}
	if f, ok := fs.Take("send", "chat:1"); !ok || f.Status != 403 {
		t.Fatalf("Take(send, chat:1) = %d, %v; want the chat:1 rule", f.Status, ok)
	}
	if _, ok := fs.Take(); ok {
		t.Fatal("a request with no key took a failure")
	}
}

func TestFailuresConcurrentTakesConsumeEachOnce(t *testing.T) {
	var fs simkit.Failures
	fs.FailNext("send", 100, simkit.Status(503, nil))
	var wg sync.WaitGroup
	var mu sync.Mutex
	taken := 0
	for range 20 {
		wg.Go(func() {
			for range 10 {
				if _, ok := fs.Take("send"); ok {
					mu.Lock()
					taken++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if taken != 100 {
		t.Fatalf("took %d failures, want 100", taken)
	}
}

func TestFailureServe(t *testing.T) {
	tests := []struct {
		name     string
		f        simkit.Failure
		answered bool
		check    func(t *testing.T, resp *http.Response, err error)
	}{
		{
			name:     "a status answers with body and headers",
			f:        simkit.Status(429, []byte(`{"error":"slow down"}`)).WithRetryAfter(1500 * time.Millisecond),
			answered: true,
			check: func(t *testing.T, resp *http.Response, err error) {
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 429 || string(body) != `{"error":"slow down"}` {
					t.Errorf("got %d %s", resp.StatusCode, body)
				}
				if got := resp.Header.Get("Retry-After"); got != "2" {
					t.Errorf("Retry-After = %q, want 2 (rounded up)", got)
				}
				if got := resp.Header.Get("Content-Type"); got != "application/json" {
					t.Errorf("Content-Type = %q", got)
				}
			},
		},
		{
			name:     "a drop is a transport error",
			f:        simkit.Drop(),
			answered: true,
			check: func(t *testing.T, _ *http.Response, err error) {
				if err == nil {
					t.Fatal("no error from a dropped connection")
				}
			},
		},
		{
			name:     "a delay alone lets the simulator answer",
			f:        simkit.Delay(10 * time.Millisecond),
			answered: false,
			check: func(t *testing.T, resp *http.Response, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != http.StatusTeapot {
					t.Errorf("status %d, want the simulator's own 418", resp.StatusCode)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			answered := make(chan bool, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ok := tt.f.Serve(w, r)
				answered <- ok
				if !ok {
					w.WriteHeader(http.StatusTeapot)
				}
			}))
			t.Cleanup(srv.Close)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
			resp, err := srv.Client().Do(req)
			if resp != nil {
				defer resp.Body.Close()
			}
			tt.check(t, resp, err)
			if got := <-answered; got != tt.answered {
				t.Errorf("Serve = %v, want %v", got, tt.answered)
			}
		})
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2, 30 * time.Second: 30} {
		if got := simkit.RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%s) = %d, want %d", d, got, want)
		}
	}
	if !errors.Is(simkit.ErrNotAcked, simkit.ErrNotAcked) {
		t.Fatal("unreachable")
	}
}
