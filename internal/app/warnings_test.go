package app

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log destination safe for the gateway's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An empty api.tokens is valid (a webhook-only gateway, helpdesks on NATS)
// but leaves /v1 closed to everyone: serve says so at start, at Warn.
func TestNewWarnsThatAnEmptyTokenListClosesV1(t *testing.T) {
	const warning = `level=WARN msg="api.tokens is empty: /v1 (replies, conversations, media) answers 401 to everyone"`
	for _, tc := range []struct {
		name   string
		tokens string
		warned bool
	}{
		{"absent", "", true},
		{"empty", "api: {tokens: []}", true},
		{"set", `api: {tokens: ["t"]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := strings.Replace(configYAML(filepath.Join(t.TempDir(), "data"), "s3cret"), `api: {tokens: ["t"]}`, tc.tokens, 1)
			var logs lockedBuffer
			a, err := New(t.Context(), parseConfig(t, yaml), Options{Platforms: platforms, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(t.Context())
			stop() // New has done what is tested; Run shuts down what it opened
			if err := a.Run(ctx); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(logs.String(), warning); got != tc.warned {
				t.Errorf("warned = %v, want %v; logs:\n%s", got, tc.warned, logs.String())
			}
		})
	}
}
