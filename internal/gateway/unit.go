package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/ingest"
	"github.com/parley-gateway/parley/normalize"
)

// unit is one supervised connector.
type unit struct {
	g      *Gateway
	region *bus.Region
	log    *slog.Logger

	mu sync.Mutex
	// built is the connector as last built; Reload replaces it between two
	// Runs.
	built *built
	// runCancel stops the Run in progress, so that a replaced connector's
	// Run ends and the new one starts.
	runCancel context.CancelFunc
	// resume wakes a connector waiting for an operator (Reload).
	resume chan struct{}
	// overlay is the supervisor's own state (not started, standby, failed,
	// stopping); nil while the connector's Run runs and its Health is the
	// truth.
	overlay   *connectors.Health
	leaseHeld bool
	// queue holds the state events not yet published, oldest first; seq
	// numbers them so a publish removes exactly what it stored.
	queue      []queued
	nextSeq    uint64
	lastQueued *connectors.Health
	wake       chan struct{}

	pubMu sync.Mutex // one state publish at a time, in queue order
}

// built is one construction of a unit's connector.
type built struct {
	spec      Spec
	conn      connectors.Connector
	pub       *ingest.Publisher
	webhook   http.Handler
	exclusive bool
	affinity  bool // sends and media fetches need the session Run keeps
}

// current returns the connector as last built.
func (u *unit) current() *built {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.built
}

// replace swaps in a rebuilt connector and stops the Run of the old one;
// the run loop starts the new one at once.
func (u *unit) replace(b *built) {
	u.mu.Lock()
	u.built = b
	cancel := u.runCancel
	u.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	u.wakeFromOperator()
}

// wakeFromOperator resumes a connector waiting for an operator.
func (u *unit) wakeFromOperator() {
	select {
	case u.resume <- struct{}{}:
	default:
	}
}

func (u *unit) holdsLease() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.leaseHeld
}

// inboundStats are the current connector's counts, for metrics.
func (u *unit) inboundStats() connectors.InboundStats {
	if ic, ok := u.current().conn.(connectors.InboundCounter); ok {
		return ic.InboundStats()
	}
	return connectors.InboundStats{}
}

type queued struct {
	seq uint64
	h   connectors.Health
}

// onHealth is the connector's Deps.OnHealth.
func (u *unit) onHealth(h connectors.Health) {
	u.enqueue(h)
	u.logState(h)
	u.refreshGauge()
}

// status combines the supervisor's state with the connector's health.
func (u *unit) status() ConnectorStatus {
	u.mu.Lock()
	ov, held, b := u.overlay, u.leaseHeld, u.built
	u.mu.Unlock()
	var h connectors.Health
	if ov != nil {
		h = *ov
	} else {
		h = b.conn.Health()
	}
	return ConnectorStatus{
		ID: b.spec.ID, Platform: b.spec.Platform, Region: b.spec.Region,
		State: h.State, Reason: h.Reason, Action: h.Action, Since: h.Since,
		Exclusive: b.exclusive, LeaseHeld: held,
	}
}

func (u *unit) refreshGauge() { u.g.o.Metrics.ConnectorState(u.current().spec.ID, u.status().State) }

// setOverlay records a supervisor state; publish also queues it as an event.
// Callers log the transitions worth a line.
func (u *unit) setOverlay(h *connectors.Health, publish bool) {
	u.mu.Lock()
	u.overlay = h
	u.mu.Unlock()
	if h != nil && publish {
		u.enqueue(*h)
	}
	u.refreshGauge()
}

func (u *unit) supervisorState(state normalize.State, reason, action string) *connectors.Health {
	return &connectors.Health{State: state, Reason: reason, Action: action, Since: u.g.o.Now()}
}

func (u *unit) setLeaseHeld(held bool) {
	u.mu.Lock()
	u.leaseHeld = held
	u.mu.Unlock()
}

func (u *unit) logState(h connectors.Health) {
	switch h.State {
	case normalize.StateRunning, normalize.StateStarting, StateStandby, normalize.StateStopped:
		u.log.Info("connector state", "state", h.State, "reason", h.Reason)
	case normalize.StateDegraded:
		u.log.Warn("connector state", "state", h.State, "reason", h.Reason, "action", h.Action)
	default:
		u.log.Error("connector state", "state", h.State, "reason", h.Reason, "action", h.Action)
	}
}

// supervise runs the connector (under its lease when exclusive) until ctx
// ends, with the state publisher beside it.
func (u *unit) supervise(ctx context.Context) {
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		u.publishStates(pubCtx)
	}()

	if u.current().exclusive {
		u.runExclusive(ctx)
	} else {
		u.runLoop(ctx)
		u.setOverlay(u.supervisorState(normalize.StateStopped, "shutting down", ""), true)
	}
	u.log.Info("connector stopped")
	stopPub()
	<-pubDone
	u.flushBounded(ctx)
}

// runExclusive runs the connector only while this instance holds its lease.
func (u *unit) runExclusive(ctx context.Context) {
	spec := u.current().spec
	key := bus.LeaseKey("connector", spec.ID)
	pause := u.restartBackoff()
	u.log.Info("connector runs on one instance at a time; waiting for its lease", "lease", key, "instance", u.g.o.InstanceID)
	for {
		u.setOverlay(u.supervisorState(StateStandby, "waiting for the lease: another instance holds it", ""), false)
		err := bus.RunWithLease(ctx, u.region.Leases, key, u.g.o.InstanceID, u.g.o.LeaseTTL,
			func(lctx context.Context) error {
				u.runLoop(lctx)
				if ctx.Err() != nil {
					// Say so while the lease is still ours, so the next
					// holder's "running" comes after this "stopped".
					u.setOverlay(u.supervisorState(normalize.StateStopped, "shutting down", ""), true)
					u.flushBounded(ctx)
				}
				return nil
			},
			func(held bool) {
				u.setLeaseHeld(held)
				switch {
				case held:
					u.log.Info("lease acquired", "lease", key)
					u.setOverlay(u.supervisorState(normalize.StateStarting, "lease acquired", ""), false)
				case ctx.Err() == nil:
					u.log.Warn("lease lost", "lease", key)
					u.setOverlay(u.supervisorState(StateStandby, "lease lost: another instance may hold it", ""), false)
				}
			})
		if ctx.Err() != nil {
			if !u.hasFinalState() {
				u.setOverlay(u.supervisorState(normalize.StateStopped, "shutting down", ""), false)
			}
			return
		}
		// The leases bucket is unusable (missing, no TTL): an operator
		// must look, but keep trying in case it is provisioned meanwhile.
		if err == nil {
			err = errors.New("lease loop ended before shutdown")
		}
		d := pause.NextBackOff()
		u.log.Error("connector lease unavailable", "lease", key, "error", err, "retry_after", d)
		u.setOverlay(u.supervisorState(normalize.StateStopped, "lease unavailable: "+err.Error(),
			"check the leases bucket "+bus.BucketName(bus.BucketLeases, spec.Region)), false)
		if !kit.Sleep(ctx, d) {
			u.setOverlay(u.supervisorState(normalize.StateStopped, "shutting down", ""), false)
			return
		}
	}
}

// hasFinalState reports whether the overlay already says "stopped".
func (u *unit) hasFinalState() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.overlay != nil && u.overlay.State == normalize.StateStopped
}

func (u *unit) restartBackoff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(u.g.o.RestartMin),
		backoff.WithMaxInterval(u.g.o.RestartMax),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.2),
		backoff.WithMaxElapsedTime(0),
	)
}

// runLoop runs the connector, restarting it with backoff whenever Run
// returns before ctx ends, and returns when ctx ends. A Run that ends
// needing an operator is not restarted until Reload wakes it; one whose
// connector Reload replaced restarts at once with the new one.
func (u *unit) runLoop(ctx context.Context) {
	bo := u.restartBackoff()
	for {
		b := u.current()
		started := u.g.o.Now()
		u.setOverlay(nil, false)
		// Wake-ups that came while nothing waited are stale.
		select {
		case <-u.resume:
		default:
		}
		rctx, cancel := context.WithCancel(ctx)
		u.mu.Lock()
		u.runCancel = cancel
		u.mu.Unlock()
		err := u.runOnce(rctx, b, started)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if u.current() != b {
			bo.Reset()
			continue // Reload replaced the connector
		}
		if oe, ok := errors.AsType[*connectors.OperatorError](err); ok {
			u.log.Error("connector needs an operator; it stays stopped until the gateway is reloaded",
				"state", oe.State, "reason", oe.Reason, "action", oe.Action, "error", err)
			u.setOverlay(u.supervisorState(oe.State, oe.Reason, oe.Action+"; then reload the gateway (SIGHUP) or restart it"), true)
			select {
			case <-ctx.Done():
				return
			case <-u.resume:
				u.log.Info("resuming a connector after an operator's reload")
				bo.Reset()
				continue
			}
		}
		if err == nil {
			err = errors.New("run returned before shutdown")
		}
		if u.g.o.Now().Sub(started) >= u.g.o.RestartMax {
			bo.Reset() // it ran well for a while: this is a new failure
		}
		d := bo.NextBackOff()
		u.log.Error("connector run failed; restarting", "error", err, "retry_after", d)
		u.setOverlay(u.failedState(b, err), true)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-u.resume:
			t.Stop()
		case <-t.C:
		}
	}
}

// failedState is the state shown while a failed connector waits for its
// restart: its own state when it reported a reason to stop (logged out, bad
// credentials), else stopped; the reason always names the error. The
// restart delay is left out so that repeated identical failures publish one
// event, not one per attempt.
func (u *unit) failedState(b *built, err error) *connectors.Health {
	h := b.conn.Health()
	state, action := normalize.StateStopped, "restarting automatically"
	if h.State == normalize.StateLoggedOut || h.State == normalize.StateBadCredentials {
		state = h.State
		if h.Action != "" {
			action = h.Action
		}
	}
	return u.supervisorState(state, "run failed: "+err.Error(), action)
}

// runOnce runs the connector's Run once, turning a panic into an error. Once
// the run has lasted StableAfter, the connector's current health is queued:
// a connector that was failing and now reports the same state it had before
// would otherwise leave the failure as the last published state.
func (u *unit) runOnce(ctx context.Context, b *built, started time.Time) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("run panicked: %v", r)
			}
		}()
		done <- b.conn.Run(ctx)
	}()
	stable := time.NewTimer(u.g.o.StableAfter)
	defer stable.Stop()
	var slow <-chan time.Time
	ctxDone := ctx.Done()
	for {
		select {
		case err := <-done:
			return err
		case <-stable.C:
			h := b.conn.Health()
			if h.Since.Before(started) {
				h.Since = u.g.o.Now()
			}
			u.enqueue(h)
			u.refreshGauge()
		case <-ctxDone:
			ctxDone = nil
			t := time.NewTimer(10 * time.Second)
			defer t.Stop()
			slow = t.C
		case <-slow:
			// Keep waiting: Run must return, and Gateway.Run promises to
			// wait for it; but tell the operator why shutdown hangs.
			u.log.Warn("connector still stopping 10s after cancellation")
		}
	}
}

// enqueue queues h for publication unless it repeats the last queued state.
func (u *unit) enqueue(h connectors.Health) {
	u.mu.Lock()
	if l := u.lastQueued; l != nil && l.State == h.State && l.Reason == h.Reason && l.Action == h.Action {
		u.mu.Unlock()
		return
	}
	hc := h
	u.lastQueued = &hc
	u.nextSeq++
	u.queue = append(u.queue, queued{seq: u.nextSeq, h: h})
	if len(u.queue) > maxQueuedStates {
		u.queue = append(u.queue[:0], u.queue[len(u.queue)-maxQueuedStates:]...)
	}
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// flush publishes the queued states in order; it stops at the first error.
func (u *unit) flush(ctx context.Context) error {
	u.pubMu.Lock()
	defer u.pubMu.Unlock()
	for {
		u.mu.Lock()
		if len(u.queue) == 0 {
			u.mu.Unlock()
			return nil
		}
		head := u.queue[0]
		u.mu.Unlock()

		pctx, cancel := context.WithTimeout(ctx, statePublishTimeout)
		err := u.current().pub.PublishState(pctx, head.h)
		cancel()
		if err != nil {
			return err
		}
		u.mu.Lock()
		for len(u.queue) > 0 && u.queue[0].seq <= head.seq {
			u.queue = u.queue[1:]
		}
		u.mu.Unlock()
	}
}

// flushBounded makes a last attempt to publish what is queued, even though
// ctx has ended.
func (u *unit) flushBounded(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stateFlushTimeout)
	defer cancel()
	if err := u.flush(fctx); err != nil {
		u.log.Warn("connector state not published at shutdown", "error", err)
	}
}

// publishStates publishes queued states as they come, retrying with backoff
// while NATS is unavailable, until ctx ends.
func (u *unit) publishStates(ctx context.Context) {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(500*time.Millisecond),
		backoff.WithMaxInterval(30*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.wake:
		}
		for {
			err := u.flush(ctx)
			if err == nil {
				bo.Reset()
				break
			}
			if ctx.Err() != nil {
				return
			}
			d := bo.NextBackOff()
			u.log.Warn("publishing connector state; retrying", "error", err, "retry_after", d)
			if !kit.Sleep(ctx, d) {
				return
			}
		}
	}
}
