package kit

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Sleep waits d or until ctx ends, and reports whether it waited fully. A
// d of zero or less returns at once, true unless ctx has ended.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// NewBackOff returns a doubling backoff with jitter from initial, capped at
// max, that never gives up: loops stop on their context instead.
func NewBackOff(initial, max time.Duration) *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(initial),
		backoff.WithMaxInterval(max),
		backoff.WithMaxElapsedTime(0),
	)
}
