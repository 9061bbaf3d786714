package connectors

import (
	"sync"
	"time"

	"github.com/parley-gateway/parley/normalize"
)

// HealthTracker holds a connector's Health and reports changes. The zero
// value is not usable; use NewHealthTracker.
type HealthTracker struct {
	mu     sync.Mutex
	h      Health
	now    func() time.Time
	notify func(Health)
}

// NewHealthTracker starts in StateStarting and calls notify (which may be
// nil) on every change of state, reason or action.
func NewHealthTracker(now func() time.Time, notify func(Health)) *HealthTracker {
	if now == nil {
		now = time.Now
	}
	return &HealthTracker{now: now, notify: notify, h: Health{State: normalize.StateStarting, Since: now()}}
}

// Set records a state; it reports only real changes.
func (t *HealthTracker) Set(state normalize.State, reason, action string) {
	t.mu.Lock()
	if t.h.State == state && t.h.Reason == reason && t.h.Action == action {
		t.mu.Unlock()
		return
	}
	since := t.h.Since
	if t.h.State != state {
		since = t.now()
	}
	t.h = Health{State: state, Reason: reason, Action: action, Since: since}
	h, notify := t.h, t.notify
	t.mu.Unlock()
	if notify != nil {
		notify(h)
	}
}

// Get returns the current health.
func (t *HealthTracker) Get() Health {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.h
}
