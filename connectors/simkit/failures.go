package simkit

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/parley-gateway/parley/connectors/kit"
)

// AnyKey, given to Failures.FailNext, matches every key.
const AnyKey = "*"

// Failure is what a simulator answers instead of the real answer, once.
//
// Delay is waited first (or until the request's context ends). Then Drop
// closes the connection without an answer; otherwise a non-zero Status
// answers with Header, that status and Body. A Failure with only Delay
// slows the call down and lets the simulator answer it normally.
type Failure struct {
	Status int
	Body   []byte
	// Header is added to the answer: Content-Type (default
	// application/json when Body is set), Retry-After...
	Header http.Header
	Delay  time.Duration
	Drop   bool
}

// Drop closes the connection without answering: a transport error for the
// client.
func Drop() Failure { return Failure{Drop: true} }

// Delay answers normally after d.
func Delay(d time.Duration) Failure { return Failure{Delay: d} }

// Status answers status with body (a JSON document, or nil for none).
func Status(status int, body []byte) Failure { return Failure{Status: status, Body: body} }

// WithRetryAfter returns f with a Retry-After header of d, in whole
// seconds rounded up (at least 1), as HTTP says.
func (f Failure) WithRetryAfter(d time.Duration) Failure {
	h := f.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds(d)))
	f.Header = h
	return f
}

// Serve applies f to one request and reports whether it answered (or
// dropped, or the client went away during Delay): then the simulator must
// write nothing more. It returns false for a Failure that only delays.
func (f Failure) Serve(w http.ResponseWriter, r *http.Request) bool {
	if !kit.Sleep(r.Context(), f.Delay) {
		return true // the client is gone; nobody reads an answer
	}
	switch {
	case f.Drop:
		DropConnection(w)
		return true
	case f.Status == 0:
		return false
	}
	h := w.Header()
	for k, vs := range f.Header {
		h[k] = append([]string(nil), vs...)
	}
	if len(f.Body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(f.Body)))
	w.WriteHeader(f.Status)
	_, _ = w.Write(f.Body)
	return true
}

// DropConnection closes the client's connection without an answer.
func DropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2, a recorder): net/http aborts the
		// response without logging.
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// Failures holds injected failures by key (an API method, an endpoint).
// Rules apply in the order they were added, each to its next n requests.
// The zero value is ready; it is safe for concurrent use.
type Failures struct {
	mu    sync.Mutex
	rules []*failRule
}

type failRule struct {
	key string
	n   int
	f   Failure
}

// FailNext makes the next n requests of key (AnyKey: of any key) answer f.
// n <= 0 adds nothing.
func (fs *Failures) FailNext(key string, n int, f Failure) {
	if n <= 0 {
		return
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rules = append(fs.rules, &failRule{key: key, n: n, f: f})
}

// Take consumes the first failure, in the order added, that applies to a
// request known by any of keys: a request may be known by its method and
// by what it addresses (Telegram fails a method, or every call to one
// chat), and one rule list keeps the order between both kinds.
func (fs *Failures) Take(keys ...string) (Failure, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, r := range fs.rules {
		if r.key != AnyKey && !slices.Contains(keys, r.key) {
			continue
		}
		r.n--
		if r.n == 0 {
			fs.rules = append(fs.rules[:i:i], fs.rules[i+1:]...)
		}
		return r.f, true
	}
	return Failure{}, false
}

// Pending counts the failures still to come for key, those added with
// AnyKey included.
func (fs *Failures) Pending(key string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	n := 0
	for _, r := range fs.rules {
		if r.key == key || r.key == AnyKey {
			n += r.n
		}
	}
	return n
}

// Clear removes every pending failure.
func (fs *Failures) Clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.rules = nil
}
