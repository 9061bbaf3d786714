package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// healthServer is a stand-in for a gateway's HTTP server: it answers
// /readyz and /healthz with the given statuses, after delay.
type healthServer struct {
	ready, live int
	delay       time.Duration
	paths       atomic.Value // the last path asked
}

func (h *healthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.paths.Store(r.URL.Path)
	select {
	case <-time.After(h.delay):
	case <-r.Context().Done():
		return
	}
	switch r.URL.Path {
	case "/readyz":
		w.WriteHeader(h.ready)
		fmt.Fprintln(w, `{"draining":false,"ready":false,`)
		fmt.Fprintln(w, `  "connectors":[{"id":"tg-eu","state":"starting"}]}`)
	case "/healthz":
		w.WriteHeader(h.live)
		fmt.Fprintln(w, `{"status":"ok"}`)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// startHealthServer serves h on network/addr and returns its port.
func startHealthServer(t *testing.T, h *healthServer, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	ts := httptest.NewUnstartedServer(h)
	ts.Listener = ln
	ts.Start()
	t.Cleanup(ts.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func TestHealthcheckExitsZeroOnlyOnA200(t *testing.T) {
	tests := []struct {
		name     string
		server   healthServer
		network  string // where the stand-in listens: tcp4 on 127.0.0.1, or tcp6 on [::1]
		listen   string // http.listen in the config, %s for the port
		args     []string
		wantCode int
		wantPath string
		check    func(t *testing.T, stdout, stderr string)
	}{
		{
			name:   "a ready gateway is healthy",
			server: healthServer{ready: http.StatusOK}, network: "tcp4", listen: "127.0.0.1:%s",
			wantCode: exitOK, wantPath: "/readyz",
			check: func(t *testing.T, stdout, stderr string) {
				if !strings.Contains(stdout, "/readyz answered 200") {
					t.Errorf("stdout %q does not say /readyz answered 200", stdout)
				}
			},
		},
		{
			name:   "a gateway that is not ready fails with the reason in one line",
			server: healthServer{ready: http.StatusServiceUnavailable, live: http.StatusOK}, network: "tcp4", listen: "127.0.0.1:%s",
			wantCode: exitRuntime, wantPath: "/readyz",
			check: func(t *testing.T, stdout, stderr string) {
				if n := strings.Count(stderr, "\n"); n != 1 {
					t.Errorf("stderr has %d lines, want 1: %q", n, stderr)
				}
				for _, s := range []string{"503 Service Unavailable", `"state":"starting"`} {
					if !strings.Contains(stderr, s) {
						t.Errorf("stderr %q lacks %q", stderr, s)
					}
				}
			},
		},
		{
			name:   "--live asks /healthz, which a draining gateway still answers",
			server: healthServer{ready: http.StatusServiceUnavailable, live: http.StatusOK}, network: "tcp4", listen: "127.0.0.1:%s",
			args: []string{"--live"}, wantCode: exitOK, wantPath: "/healthz",
		},
		{
			name:   "a listener on 0.0.0.0 is dialled on 127.0.0.1",
			server: healthServer{ready: http.StatusOK}, network: "tcp4", listen: "0.0.0.0:%s",
			wantCode: exitOK, wantPath: "/readyz",
			check: func(t *testing.T, stdout, stderr string) {
				if !strings.Contains(stdout, "http://127.0.0.1:") {
					t.Errorf("stdout %q: not dialled on 127.0.0.1", stdout)
				}
			},
		},
		{
			name:   "a listener on [::] is dialled on [::1]",
			server: healthServer{ready: http.StatusOK}, network: "tcp6", listen: "[::]:%s",
			wantCode: exitOK, wantPath: "/readyz",
			check: func(t *testing.T, stdout, stderr string) {
				if !strings.Contains(stdout, "http://[::1]:") {
					t.Errorf("stdout %q: not dialled on [::1]", stdout)
				}
			},
		},
		{
			name:   "a gateway that does not answer in time fails within --timeout",
			server: healthServer{ready: http.StatusOK, delay: time.Minute}, network: "tcp4", listen: "127.0.0.1:%s",
			args: []string{"--timeout", "100ms"}, wantCode: exitRuntime, wantPath: "/readyz",
			check: func(t *testing.T, stdout, stderr string) {
				if !strings.Contains(stderr, "no answer") || !strings.Contains(stderr, "within 100ms") {
					t.Errorf("stderr %q does not say there was no answer within 100ms", stderr)
				}
			},
		},
		{
			name:   "an unknown flag is a usage error",
			server: healthServer{ready: http.StatusOK}, network: "tcp4", listen: "127.0.0.1:%s",
			args: []string{"--no-such-flag"}, wantCode: exitUsage,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if tt.network == "tcp6" {
				addr = "[::1]:0"
			}
			port := startHealthServer(t, &tt.server, tt.network, addr)
			cfg := writeConfig(t, fmt.Sprintf("http: {listen: %q}\napi: {tokens: [x]}\nconnectors: []\n", fmt.Sprintf(tt.listen, port)))
			env, out, errOut := testEnv(nil)
			start := time.Now()
			code := run(t.Context(), env, append([]string{"healthcheck", "--config", cfg}, tt.args...))
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("healthcheck took %s", took)
			}
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if got, _ := tt.server.paths.Load().(string); got != tt.wantPath {
				t.Errorf("asked %q, want %q", got, tt.wantPath)
			}
			if tt.check != nil {
				tt.check(t, out.String(), errOut.String())
			}
		})
	}
}

func TestHealthcheckFailsWhenNothingListens(t *testing.T) {
	cfg := writeConfig(t, fmt.Sprintf("http: {listen: %q}\napi: {tokens: [x]}\nconnectors: []\n", mustFreeAddr(t)))
	env, out, errOut := testEnv(nil)
	if code := run(t.Context(), env, []string{"healthcheck", "--config", cfg}); code != exitRuntime {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitRuntime, out, errOut)
	}
	if !strings.Contains(errOut.String(), "connection refused") {
		t.Errorf("stderr %q does not say the connection was refused", errOut)
	}
}
