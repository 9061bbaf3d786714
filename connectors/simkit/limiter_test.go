package simkit_test

import (
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/simkit"
)

var t0 = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

func TestLimiterZeroLimitAllowsEverything(t *testing.T) {
	l := simkit.NewLimiter(simkit.Limit{})
	for range 1000 {
		if ok, _ := l.Allow("a", t0); !ok {
			t.Fatal("the zero limit refused a call")
		}
	}
}

func TestLimiterIntervalPerKey(t *testing.T) {
	l := simkit.NewLimiter(simkit.Limit{Interval: time.Second})
	if ok, _ := l.Allow("chat-1", t0); !ok {
		t.Fatal("first call refused")
	}
	ok, wait := l.Allow("chat-1", t0.Add(300*time.Millisecond))
	if ok || wait != 700*time.Millisecond {
		t.Fatalf("second call within the interval: ok %v, retry after %s; want refused, 700ms", ok, wait)
	}
	if ok, _ := l.Allow("chat-2", t0.Add(300*time.Millisecond)); !ok {
		t.Fatal("another key was refused")
	}
	// The refused call consumed nothing: the interval still runs from t0.
	if ok, _ := l.Allow("chat-1", t0.Add(time.Second)); !ok {
		t.Fatal("call after the interval refused")
	}
}

func TestLimiterTokenBucket(t *testing.T) {
	l := simkit.NewLimiter(simkit.Limit{PerSecond: 10, Burst: 3})
	for i := range 3 {
		if ok, _ := l.Allow("acct", t0); !ok {
			t.Fatalf("call %d of the burst refused", i)
		}
	}
	ok, wait := l.Allow("acct", t0)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("call over the burst: ok %v, retry after %s; want refused, 100ms", ok, wait)
	}
	// Refusals take no token: a refused call repeated still waits 100ms.
	if _, wait := l.Allow("acct", t0); wait != 100*time.Millisecond {
		t.Fatalf("refused call consumed a token: retry after %s", wait)
	}
	if ok, _ := l.Allow("acct", t0.Add(100*time.Millisecond)); !ok {
		t.Fatal("call after the refill refused")
	}
	if ok, _ := l.Allow("other", t0); !ok {
		t.Fatal("another key shares the bucket")
	}
}

func TestLimiterSetLimitForgetsHistory(t *testing.T) {
	l := simkit.NewLimiter(simkit.Limit{Interval: time.Hour})
	l.Allow("k", t0)
	l.SetLimit(simkit.Limit{Interval: time.Minute})
	if got := l.Limit(); got.Interval != time.Minute {
		t.Fatalf("Limit() = %+v", got)
	}
	if ok, _ := l.Allow("k", t0); !ok {
		t.Fatal("history survived SetLimit")
	}
	if ok, wait := l.Allow("k", t0.Add(time.Second)); ok || wait != 59*time.Second {
		t.Fatalf("ok %v wait %s, want refused for 59s", ok, wait)
	}
}
