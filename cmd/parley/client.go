package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/parley-gateway/parley/config"
	"github.com/parley-gateway/parley/internal/app"
	"github.com/parley-gateway/parley/internal/bus"
)

// clientBus connects a CLI command to the NATS that a running gateway uses:
// the configured cluster, or the embedded server's listener.
func clientBus(ctx context.Context, cfg *config.Config) (*bus.Bus, error) {
	c := *cfg
	if c.NATS.URL == "" {
		if c.NATS.Embedded.Listen == "" {
			return nil, usagef("this config runs NATS embedded without a listener, so no other process can reach it; set nats.embedded.listen (e.g. 127.0.0.1:4222) or nats.url")
		}
		c.NATS.URL = "nats://" + c.NATS.Embedded.Listen
	}
	opts := app.BusOptions(&c, "cli", slog.New(slog.DiscardHandler))
	b, err := bus.Open(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats at %s: %w", c.NATS.URL, err)
	}
	return b, nil
}

// pickRegions returns the --region list, or every configured region.
func pickRegions(cfg *config.Config, flagValue string) ([]string, error) {
	all := cfg.Regions()
	if flagValue == "" {
		if len(all) == 0 {
			return nil, usagef("no enabled connector names a region; pass --region")
		}
		return all, nil
	}
	regions := strings.Split(flagValue, ",")
	for _, r := range regions {
		if !slices.Contains(all, r) {
			return nil, usagef("region %q: no enabled connector names it (configured: %s)", r, strings.Join(all, ", "))
		}
	}
	return regions, nil
}
