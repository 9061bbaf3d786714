package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// runHealthcheck asks a running gateway's HTTP server whether it is ready
// (or, with --live, alive), for a container's HEALTHCHECK or a supervisor.
// It exits 0 on a 200 and 1 on anything else, within --timeout, and says why
// in one line.
func runHealthcheck(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "healthcheck", "healthcheck [--config FILE] [--live] [--timeout 3s]")
	cfgPath := configFlag(fs, env)
	live := fs.Bool("live", false, "ask /healthz (the process runs) instead of /readyz (it takes traffic)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after `DURATION` without an answer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	cfg, err := loadConfig(ctx, env, *cfgPath)
	if err != nil {
		return err
	}
	path := "/readyz"
	if *live {
		path = "/healthz"
	}
	url := "http://" + dialAddr(cfg.HTTP.Listen) + path

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("asking %s: %w", url, err)
	}
	// Straight to the gateway: no proxy, no connection kept for later.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer from %s within %s", url, *timeout)
	}
	if err != nil {
		return fmt.Errorf("asking %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", url, resp.Status, clip(strings.Join(strings.Fields(string(body)), " "), 300))
	}
	fmt.Fprintf(env.stdout, "%s answered %s\n", url, resp.Status)
	return nil
}

// dialAddr turns a listen address into one to dial: a server listening on
// every interface (0.0.0.0, [::] or no host) is reached over loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}
