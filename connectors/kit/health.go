package kit

import (
	"context"
	"sync"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// StorageProbeInterval is how often a connector that saw events fail to
// store checks whether storage is back.
const StorageProbeInterval = 2 * time.Second

// Problem is one reason for a connector not to be running well.
type Problem struct {
	Reason string // what is wrong, in a sentence; never a secret
	Action string // what an operator can do, if anything
}

// Health derives a connector's health from what each part of it knows, so
// that storage recovering does not hide a platform outage and vice versa:
//
//   - a fatal problem (bad credentials, a logged-out device) wins, in its
//     own state;
//   - then a storage problem (events cannot be stored): degraded;
//   - then a platform problem (unreachable, refusing): degraded;
//   - then running once the connector said it started, else starting.
//
// Every change is reported once through Deps.OnHealth, in order. The zero
// value is not usable; use NewHealth.
type Health struct {
	now    func() time.Time
	notify func(connectors.Health)

	// mu orders derivations and their reports; curMu guards current
	// alone, so that Get never waits on a report in progress (the
	// supervisor's OnHealth calls Get).
	mu       sync.Mutex
	curMu    sync.Mutex
	current  connectors.Health
	started  bool
	ended    bool // Run returned: stopped until the next Begin
	fatal    *fatal
	storage  *Problem
	platform *Problem
}

type fatal struct {
	state normalize.State
	Problem
}

// NewHealth starts in StateStarting and reports changes to deps.OnHealth
// (which may be nil), timed by deps.Now (nil: time.Now).
func NewHealth(deps connectors.Deps) *Health {
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	return &Health{now: now, notify: deps.OnHealth, current: connectors.Health{State: normalize.StateStarting, Since: now()}}
}

// Get returns the current health without I/O: a connector's Health method.
func (h *Health) Get() connectors.Health {
	h.curMu.Lock()
	defer h.curMu.Unlock()
	return h.current
}

// Begin resets everything at the start of Run.
func (h *Health) Begin() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.started, h.ended, h.fatal, h.storage, h.platform = false, false, nil, nil, nil
	h.publishLocked()
}

// End records that Run returned: stopped, unless a fatal problem stays
// visible for the operator.
func (h *Health) End() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.started, h.ended = false, true
	h.publishLocked()
}

// Started records that the connector receives: running, unless a problem
// says otherwise.
func (h *Health) Started() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.started = true
	h.publishLocked()
}

// Fatal records a problem only an operator can solve, in state
// (normalize.StateBadCredentials or normalize.StateLoggedOut). It stays
// until Begin. It returns the error Run should end with.
func (h *Health) Fatal(state normalize.State, reason, action string, err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fatal = &fatal{state: state, Problem: Problem{Reason: reason, Action: action}}
	h.publishLocked()
	return connectors.NeedsOperator(state, reason, action, err)
}

// Storage records that events cannot be stored (p) or can again (nil).
func (h *Health) Storage(p *Problem) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p == nil && h.storage == nil {
		return // the hot path of every store
	}
	h.storage = p
	h.publishLocked()
}

// StorageTrouble reports whether a storage problem is recorded.
func (h *Health) StorageTrouble() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.storage != nil
}

// Platform records that the platform cannot be reached or refuses (p), or
// is fine again (nil).
func (h *Health) Platform(p *Problem) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p == nil && h.platform == nil {
		return
	}
	h.platform = p
	h.publishLocked()
}

// WatchStorage probes pub every StorageProbeInterval while a storage
// problem is recorded, and clears it as soon as a probe succeeds; it
// returns when ctx ends. A webhook connector runs it inside Run: it has no
// traffic of its own to prove storage is back, and while it reports
// degraded the instance is not ready, so a load balancer might never send
// it the platform retry that would clear the problem.
func (h *Health) WatchStorage(ctx context.Context, pub connectors.Publisher) {
	p, ok := pub.(connectors.Prober)
	if !ok {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(StorageProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !h.StorageTrouble() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, StorageProbeInterval)
		err := p.Probe(pctx)
		cancel()
		if err == nil {
			h.Storage(nil)
		}
	}
}

// publishLocked derives the state and reports it if it changed. It runs
// under mu so that reports keep their order.
func (h *Health) publishLocked() {
	switch {
	case h.fatal != nil:
		h.setLocked(h.fatal.state, h.fatal.Reason, h.fatal.Action)
	case h.ended:
		// A send or a straggling goroutine learning something after Run
		// returned does not make a stopped connector look alive.
		h.setLocked(normalize.StateStopped, "", "")
	case h.storage != nil:
		h.setLocked(normalize.StateDegraded, h.storage.Reason, h.storage.Action)
	case h.platform != nil:
		h.setLocked(normalize.StateDegraded, h.platform.Reason, h.platform.Action)
	case h.started:
		h.setLocked(normalize.StateRunning, "", "")
	default:
		h.setLocked(normalize.StateStarting, "", "")
	}
}

func (h *Health) setLocked(state normalize.State, reason, action string) {
	c := h.Get()
	if c.State == state && c.Reason == reason && c.Action == action {
		return
	}
	since := c.Since
	if c.State != state {
		since = h.now()
	}
	c = connectors.Health{State: state, Reason: reason, Action: action, Since: since}
	h.curMu.Lock()
	h.current = c
	h.curMu.Unlock()
	if h.notify != nil {
		h.notify(c)
	}
}
