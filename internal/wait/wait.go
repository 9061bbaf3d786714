// Package wait is the one bounded wait of Parley's tests: poll a condition
// every few milliseconds until it holds, and fail the test, naming what it
// waited for, once the bound passes. Tests wait on conditions, never on a
// fixed time.Sleep, and never without a bound.
//
// It imports only the standard library, so that any package's tests may
// use it.
package wait

import (
	"context"
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 5 * time.Millisecond

// For polls cond until it holds, and fails the test with "timed out after
// <within> waiting for <what>" once within has passed; what reads after
// "waiting for" ("the hold to be cleared").
func For(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if !Poll(ctx, cond) {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// Until polls cond until it holds, and fails the test with "timed out
// waiting until <what>" once ctx ends; what is a clause ("offset 3 is
// saved"). It is For for tests that bound a whole scenario with one
// context.
func Until(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Poll(ctx, cond) {
		t.Fatalf("timed out waiting until %s", what)
	}
}

// Poll polls cond until it holds or ctx ends, and reports whether it held.
// It is for callers that fail in their own words, with what they know
// about the failure (a child process's output).
func Poll(ctx context.Context, cond func() bool) bool {
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}
