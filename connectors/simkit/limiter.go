package simkit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a platform's rate limit on one key (an account, a chat). The
// zero Limit allows everything.
type Limit struct {
	// Interval is the minimum gap between two calls of one key (Telegram:
	// 1s per chat); 0 for none.
	Interval time.Duration
	// PerSecond is the sustained rate of one key's token bucket, Burst its
	// size (at least 1); PerSecond 0 means no bucket.
	PerSecond float64
	Burst     int
}

// Limiter answers, per key, whether a call may go now and, if not, the
// retry-after a platform would answer. A refused call consumes nothing.
// It keeps state for every key it has seen, which suits a simulator's
// handful of accounts and chats. It is safe for concurrent use.
type Limiter struct {
	mu    sync.Mutex
	limit Limit
	keys  map[string]*limitState
}

type limitState struct {
	last   time.Time // of the last allowed call; zero before the first
	bucket *rate.Limiter
}

// NewLimiter returns a limiter of l for every key.
func NewLimiter(l Limit) *Limiter {
	return &Limiter{limit: l, keys: map[string]*limitState{}}
}

// SetLimit changes the limit and forgets every key's history.
func (l *Limiter) SetLimit(limit Limit) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.limit = limit
	l.keys = map[string]*limitState{}
}

// Limit returns the limit in force.
func (l *Limiter) Limit() Limit {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// Allow reports whether a call of key may go at now; if not, retryAfter
// is how long until it may (always > 0). now must not go backwards for a
// key by more than the limits span; a simulator passes its clock.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit.Interval <= 0 && l.limit.PerSecond <= 0 {
		return true, 0
	}
	st := l.keys[key]
	if st == nil {
		st = &limitState{}
		if l.limit.PerSecond > 0 {
			st.bucket = rate.NewLimiter(rate.Limit(l.limit.PerSecond), max(l.limit.Burst, 1))
		}
		if l.keys == nil {
			l.keys = map[string]*limitState{}
		}
		l.keys[key] = st
	}
	if !st.last.IsZero() && l.limit.Interval > 0 {
		if wait := st.last.Add(l.limit.Interval).Sub(now); wait > 0 {
			return false, wait
		}
	}
	if st.bucket != nil {
		r := st.bucket.ReserveN(now, 1)
		if wait := r.DelayFrom(now); wait > 0 {
			r.CancelAt(now)
			return false, wait
		}
	}
	st.last = now
	return true, 0
}

// RetryAfterSeconds is d in the whole seconds of a Retry-After header or a
// retry_after field: rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
