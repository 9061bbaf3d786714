package kit_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/kit"
)

func TestSleep(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"no wait with a live context is a full wait", context.Background(), 0, true},
		{"a negative wait with a live context is a full wait", context.Background(), -time.Second, true},
		{"no wait after the context ended is not", cancelled, 0, false},
		{"a negative wait after the context ended is not", cancelled, -time.Second, false},
		{"a short wait with a live context is waited", context.Background(), 10 * time.Millisecond, true},
		{"a wait after the context ended returns at once", cancelled, time.Hour, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			begin := time.Now()
			if got := kit.Sleep(tt.ctx, tt.d); got != tt.want {
				t.Errorf("Sleep(%s) = %v, want %v", tt.d, got, tt.want)
			}
			if tt.want && time.Since(begin) < tt.d {
				t.Errorf("Sleep(%s) reported a full wait after %s", tt.d, time.Since(begin))
			}
		})
	}
}

func TestSleepReturnsPromptlyWhenItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	done := make(chan bool, 1)
	begin := time.Now()
	go func() { done <- kit.Sleep(ctx, time.Hour) }()
	select {
	case full := <-done:
		if full {
			t.Error("Sleep = true, want false: the context ended mid-wait")
		}
		if took := time.Since(begin); took > 2*time.Second {
			t.Errorf("Sleep returned %s after its context ended, want promptly", took)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Sleep did not return within 5s of its context ending")
	}
}

func TestNewBackOffNeverGivesUp(t *testing.T) {
	bo := kit.NewBackOff(10*time.Millisecond, 40*time.Millisecond)
	for i := range 20 {
		d := bo.NextBackOff()
		if d < 0 {
			t.Fatalf("attempt %d: NextBackOff = %s, want a wait: the loop stops on its context, not the backoff", i, d)
		}
		if d > 60*time.Millisecond { // max plus its jitter of a half
			t.Fatalf("attempt %d: NextBackOff = %s, want at most the cap of 40ms with jitter", i, d)
		}
	}
}
