package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseHeld is returned by [AcquireLease] when another owner holds the key.
var ErrLeaseHeld = errors.New("lease held by another owner")

// ErrLeaseLost is the cause of the context cancellation that [RunWithLease]
// hands its function when the lease could not be renewed in time.
var ErrLeaseLost = errors.New("lease lost")

// LeaseKey builds a lease key from parts (for example platform and account),
// each escaped with [Token] and joined with ".": always a valid KV key.
func LeaseKey(parts ...string) string {
	esc := make([]string, len(parts))
	for i, p := range parts {
		esc[i] = Token(p)
	}
	return strings.Join(esc, ".")
}

// Lease is one held claim on a key of a leases bucket (a KV bucket with a
// TTL: the server forgets a key that is not renewed within the TTL). It is
// not safe for concurrent use; [RunWithLease] is the usual way to hold one.
type Lease struct {
	kv      jetstream.KeyValue
	key     string
	owner   string
	ttl     time.Duration
	rev     uint64
	renewed time.Time // when the last successful write was sent
}

// AcquireLease makes one attempt to take key: it returns [ErrLeaseHeld] when
// somebody holds it. ttl must not exceed the bucket's TTL.
func AcquireLease(ctx context.Context, kv jetstream.KeyValue, key, owner string, ttl time.Duration) (*Lease, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("acquiring lease %s: ttl must be positive", key)
	}
	sent := time.Now()
	rev, err := kv.Create(ctx, key, []byte(owner))
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Still written in this owner's name: a lease this owner lost (its
		// renewal failed while NATS was unreachable) and gave up. Nobody
		// else can hold it while the key says so, so it is taken back at
		// its revision instead of waited out.
		if e, gerr := kv.Get(ctx, key); gerr == nil && string(e.Value()) == owner {
			sent = time.Now()
			if rev, err = kv.Update(ctx, key, []byte(owner), e.Revision()); err == nil {
				return &Lease{kv: kv, key: key, owner: owner, ttl: ttl, rev: rev, renewed: sent}, nil
			}
		}
		return nil, fmt.Errorf("%w: %s", ErrLeaseHeld, key)
	}
	if err != nil {
		return nil, fmt.Errorf("acquiring lease %s: %w", key, err)
	}
	return &Lease{kv: kv, key: key, owner: owner, ttl: ttl, rev: rev, renewed: sent}, nil
}

// Key is the leased key.
func (l *Lease) Key() string { return l.key }

// Owner is the value written to the key.
func (l *Lease) Owner() string { return l.owner }

// Revision is the key's revision written by the last acquire or renewal.
func (l *Lease) Revision() uint64 { return l.rev }

// Deadline is when the holder must consider the lease gone if no renewal
// succeeded since: the last successful write's send time plus the TTL, minus
// a margin for clock drift and pauses. The server-side expiry is later, so a
// holder that stops at Deadline never overlaps the next holder.
func (l *Lease) Deadline() time.Time { return l.renewed.Add(l.ttl - leaseMargin(l.ttl)) }

// Renew extends the lease by writing the key at its last revision. Any error
// (revision mismatch, key gone, timeout) wraps [ErrLeaseLost]: the holder
// must stop.
func (l *Lease) Renew(ctx context.Context) error {
	sent := time.Now()
	rev, err := l.kv.Update(ctx, l.key, []byte(l.owner), l.rev)
	if err != nil {
		return fmt.Errorf("%w: renewing %s: %w", ErrLeaseLost, l.key, err)
	}
	l.rev, l.renewed = rev, sent
	return nil
}

// Release deletes the key if it still holds this lease's revision, so a
// standby can take over without waiting for the TTL.
func (l *Lease) Release(ctx context.Context) error {
	if err := l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev)); err != nil {
		return fmt.Errorf("releasing lease %s: %w", l.key, err)
	}
	return nil
}

func leaseMargin(ttl time.Duration) time.Duration { return ttl / 5 }

// leaseOpTimeout bounds one KV call of the lease machinery.
func leaseOpTimeout(ttl time.Duration) time.Duration {
	return min(max(ttl/3, 200*time.Millisecond), 5*time.Second)
}

// RunWithLease runs fn while holding key in the leases bucket kv, so that at
// most one owner runs it at a time (a WhatsApp device, a Telegram poller).
//
// It blocks until it acquires the key (watching the key to retry as soon as
// the holder releases it or its TTL expires, and retrying on a bounded ticker
// in case an update is missed), then runs fn. The lease is renewed every
// ttl/3; fn's context is cancelled, with cause [ErrLeaseLost], as soon as a
// renewal fails or the local deadline (last renewal + ttl - margin) passes.
// fn must return promptly once its context is cancelled, within ttl/5 after
// a loss: the local deadline precedes the server-side expiry by that margin,
// and only after that expiry can the next holder start. Until fn returns the
// lease is still renewed (never after a loss), also after ctx ended.
//
// When fn returns, the lease is released. If ctx is still alive and fn
// returned nil or ended because of the lease loss (an error that is
// context.Canceled or wraps ErrLeaseLost), RunWithLease goes back to
// acquiring. Any other error of fn is returned. RunWithLease returns nil
// when ctx ends.
//
// ttl should be the bucket's TTL (Options.LeaseTTL); zero or a larger value
// is replaced by the bucket's TTL. A bucket without TTL is an error: a dead
// holder would keep the lease for ever. onState, when not nil, is called with
// true after acquiring and false after releasing or losing the lease, on the
// calling goroutine.
func RunWithLease(ctx context.Context, kv jetstream.KeyValue, key, owner string, ttl time.Duration,
	fn func(ctx context.Context) error, onState func(held bool)) error {
	if onState == nil {
		onState = func(bool) {}
	}
	ttl, err := leaseTTL(ctx, kv, ttl)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	// Paces re-acquisition when fn keeps returning quickly.
	quick := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(ttl),
		backoff.WithMaxElapsedTime(0),
	)
	for {
		l, err := acquireLease(ctx, kv, key, owner, ttl)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		onState(true)
		started := time.Now()
		lost, err := holdLease(ctx, l, fn)
		onState(false)

		ctxErr := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrLeaseLost)
		if ctx.Err() != nil {
			if err != nil && !ctxErr {
				return err
			}
			return nil
		}
		if err != nil && !(lost && (errors.Is(err, context.Canceled) || errors.Is(err, ErrLeaseLost))) {
			return err
		}
		if time.Since(started) >= ttl {
			quick.Reset()
			continue
		}
		t := time.NewTimer(quick.NextBackOff())
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// leaseTTL reads the bucket's TTL (retrying while NATS is unreachable) and
// returns the TTL the holder must work with.
func leaseTTL(ctx context.Context, kv jetstream.KeyValue, ttl time.Duration) (time.Duration, error) {
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	st, err := backoff.RetryWithData(func() (jetstream.KeyValueStatus, error) {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := kv.Status(actx)
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, backoff.Permanent(err)
		}
		return st, err
	}, backoff.WithContext(bo, ctx))
	if err != nil {
		return 0, fmt.Errorf("reading leases bucket %s: %w", kv.Bucket(), err)
	}
	bucketTTL := st.TTL()
	if bucketTTL <= 0 {
		return 0, fmt.Errorf("leases bucket %s has no TTL: a dead holder would keep its lease for ever", kv.Bucket())
	}
	if ttl <= 0 || ttl > bucketTTL {
		ttl = bucketTTL
	}
	return ttl, nil
}

// acquireLease blocks until it holds key, ctx ends or the key is unusable.
func acquireLease(ctx context.Context, kv jetstream.KeyValue, key, owner string, ttl time.Duration) (*Lease, error) {
	retry := min(max(ttl/3, 100*time.Millisecond), 5*time.Second)
	ticker := time.NewTicker(retry)
	defer ticker.Stop()
	var w jetstream.KeyWatcher
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
	}()
	for {
		if w == nil {
			// Best effort: while NATS is unreachable the ticker retries.
			// Started before Create, so a release right after a failed
			// Create is not missed.
			if nw, err := kv.Watch(ctx, key, jetstream.UpdatesOnly(), jetstream.MetaOnly()); err == nil {
				w = nw
			}
		}
		actx, cancel := context.WithTimeout(ctx, leaseOpTimeout(ttl))
		l, err := AcquireLease(actx, kv, key, owner, ttl)
		cancel()
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, jetstream.ErrInvalidKey) || errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil, err
		}
	wait:
		for {
			var updates <-chan jetstream.KeyValueEntry
			if w != nil {
				updates = w.Updates()
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-ticker.C:
				break wait
			case e, ok := <-updates:
				if !ok {
					_ = w.Stop()
					w = nil // recreated on the next attempt
					continue
				}
				if e == nil {
					continue // end of initial values
				}
				if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
					break wait
				}
			}
		}
	}
}

// holdLease runs fn under l, renewing it, and releases it when fn returns.
// lost reports whether fn's context was cancelled because of a lost lease.
func holdLease(ctx context.Context, l *Lease, fn func(ctx context.Context) error) (lost bool, err error) {
	fnCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- fn(fnCtx) }()

	// Renewals and the release outlive ctx: fn may still be stopping.
	bg := context.WithoutCancel(ctx)
	renew := time.NewTicker(l.ttl / 3)
	defer renew.Stop()
	deadline := time.NewTimer(time.Until(l.Deadline()))
	defer deadline.Stop()
	for {
		select {
		case err := <-done:
			rctx, rcancel := context.WithTimeout(bg, leaseOpTimeout(l.ttl))
			_ = l.Release(rctx) // best effort: otherwise the TTL frees it
			rcancel()
			return lost, err
		case <-deadline.C:
			if !lost {
				lost = true
				cancel(fmt.Errorf("%w: %s: no renewal since %s", ErrLeaseLost, l.key, l.renewed.Format(time.RFC3339Nano)))
			}
		case <-renew.C:
			if lost {
				continue
			}
			rctx, rcancel := context.WithDeadline(bg, l.Deadline())
			err := l.Renew(rctx)
			rcancel()
			if err != nil {
				lost = true
				renew.Stop()
				cancel(err)
				continue
			}
			deadline.Reset(time.Until(l.Deadline()))
		}
	}
}
