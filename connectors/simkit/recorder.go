package simkit

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Recorder bounds.
const (
	// DefaultRecorderSize is how many requests a Recorder keeps when
	// NewRecorder is given 0.
	DefaultRecorderSize = 10000
	// MaxRecordedBody is how much of each body is kept; Request.Truncated
	// says when a body was longer.
	MaxRecordedBody = 1 << 20
)

// Request is one request a simulator served, as it arrived.
type Request struct {
	Method    string
	Path      string
	Query     url.Values
	Header    http.Header
	Body      []byte // at most MaxRecordedBody bytes
	Truncated bool   // the body was longer than Body
	Time      time.Time
}

// Recorder keeps the latest requests a simulator served, for assertions.
// It keeps at most its size; older requests are dropped and counted. It is
// safe for concurrent use.
type Recorder struct {
	now func() time.Time

	mu      sync.Mutex
	size    int
	reqs    []Request
	dropped int
	changed chan struct{} // closed and replaced on each record
}

// NewRecorder keeps up to size requests (0: DefaultRecorderSize), timed by
// now (nil: time.Now).
func NewRecorder(size int, now func() time.Time) *Recorder {
	if size <= 0 {
		size = DefaultRecorderSize
	}
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now, size: size, changed: make(chan struct{})}
}

// Wrap records every request before h serves it. It reads the body whole
// and hands h an identical one, so a simulator's own body limit still
// applies to what h reads.
func (rec *Recorder) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(r.Body)
			_ = r.Body.Close()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rec.Record(r, body)
		h.ServeHTTP(w, r)
	})
}

// Record keeps one request with its body (which the caller has read).
func (rec *Recorder) Record(r *http.Request, body []byte) {
	req := Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.Query(),
		Header: r.Header.Clone(),
		Time:   rec.now(),
	}
	if len(body) > MaxRecordedBody {
		body, req.Truncated = body[:MaxRecordedBody], true
	}
	req.Body = bytes.Clone(body)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.reqs) == rec.size {
		rec.reqs = append(rec.reqs[:0:0], rec.reqs[1:]...)
		rec.dropped++
	}
	rec.reqs = append(rec.reqs, req)
	close(rec.changed)
	rec.changed = make(chan struct{})
}

// Requests returns the kept requests, oldest first.
func (rec *Recorder) Requests() []Request { return rec.Filter(nil) }

// Filter returns the kept requests keep accepts (nil: all), oldest first.
func (rec *Recorder) Filter(keep func(Request) bool) []Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []Request
	for _, r := range rec.reqs {
		if keep == nil || keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// Count returns how many kept requests keep accepts (nil: all).
func (rec *Recorder) Count(keep func(Request) bool) int { return len(rec.Filter(keep)) }

// Wait returns the kept requests keep accepts once there are at least n,
// or the error of ctx when it ends first.
func (rec *Recorder) Wait(ctx context.Context, n int, keep func(Request) bool) ([]Request, error) {
	for {
		rec.mu.Lock()
		changed := rec.changed
		rec.mu.Unlock()
		if got := rec.Filter(keep); len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Dropped counts the requests dropped to keep within the size.
func (rec *Recorder) Dropped() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.dropped
}

// Reset forgets every kept request.
func (rec *Recorder) Reset() {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reqs, rec.dropped = nil, 0
}

// Match accepts requests of method ("" for any) whose path starts with
// prefix, for Filter, Count and Wait.
func Match(method, prefix string) func(Request) bool {
	return func(r Request) bool {
		return (method == "" || r.Method == method) && strings.HasPrefix(r.Path, prefix)
	}
}
