package wait_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-gateway/parley/internal/wait"
)

// recorder is a testing.TB whose Fatalf records the message and ends the
// goroutine, as the real one does, without failing the enclosing test.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls f with a recorder in its own goroutine and returns what it
// failed with ("" when it did not).
func run(t *testing.T, f func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the wait did not return within 5s")
	}
	return r.failed
}

func TestForReturnsOnceTheConditionHolds(t *testing.T) {
	var polls atomic.Int32
	failed := run(t, func(tb testing.TB) {
		wait.For(tb, 5*time.Second, "the third poll", func() bool { return polls.Add(1) >= 3 })
	})
	if failed != "" {
		t.Errorf("For failed with %q, want it to return", failed)
	}
	if got := polls.Load(); got != 3 {
		t.Errorf("cond polled %d times, want 3: For stops polling once it holds", got)
	}
}

func TestForFailsNamingWhatItWaitedFor(t *testing.T) {
	start := time.Now()
	failed := run(t, func(tb testing.TB) {
		wait.For(tb, 50*time.Millisecond, "the hold to be cleared", func() bool { return false })
	})
	if want := "timed out after 50ms waiting for the hold to be cleared"; failed != want {
		t.Errorf("For failed with %q, want %q", failed, want)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("For gave up after %s, before its bound of 50ms", took)
	}
}

func TestUntilFailsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	failed := run(t, func(tb testing.TB) {
		wait.Until(ctx, tb, "offset 3 is saved", func() bool { return false })
	})
	if want := "timed out waiting until offset 3 is saved"; failed != want {
		t.Errorf("Until failed with %q, want %q", failed, want)
	}
}

func TestPoll(t *testing.T) {
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		cond func() bool
		want bool
	}{
		{"a condition that holds at once is true even after the context ended", cancelled, func() bool { return true }, true},
		{"a condition that never holds is false once the context ended", cancelled, func() bool { return false }, false},
		{"a condition that comes to hold is true", t.Context(), countdown(3), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := wait.Poll(tt.ctx, tt.cond); got != tt.want {
				t.Errorf("Poll = %v, want %v", got, tt.want)
			}
		})
	}
}

// countdown returns a condition that holds from its nth poll on.
func countdown(n int) func() bool {
	return func() bool { n--; return n <= 0 }
}
