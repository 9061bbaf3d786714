package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/parley-gateway/parley/config"
	"github.com/parley-gateway/parley/internal/app"
)

func runServe(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "serve", "serve [--config FILE] [--region R[,R...]]")
	cfgPath := configFlag(fs, env)
	regionList := fs.String("region", "", "serve only these comma-separated `regions` (default: every region an enabled connector names)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg, err := loadConfig(ctx, env, *cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(env.stderr, cfg.Log)
	var regions []string
	if *regionList != "" {
		if regions, err = pickRegions(cfg, *regionList); err != nil {
			return err
		}
	}
	a, err := app.New(ctx, cfg, app.Options{Regions: regions, Logger: log, Platforms: env.registry()})
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(ctx, env, *cfgPath, a, hup, log)
	return a.Run(ctx)
}

// reloadOnHangup applies the configuration file again on every SIGHUP:
// connectors whose settings changed restart with the new ones, and those
// stopped for an operator (a revoked token, a logged-out device) resume.
// A file that does not validate changes nothing.
func reloadOnHangup(ctx context.Context, env *cliEnv, path string, a *app.App, hup <-chan os.Signal, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		log.Info("reloading the configuration", "path", path)
		cfg, err := loadConfig(ctx, env, path)
		if errors.Is(err, errInterrupted) {
			return // serve is stopping
		}
		if err != nil {
			log.Error("configuration not reloaded: it does not validate", "error", err)
			continue
		}
		if err := a.Reload(cfg); err != nil {
			log.Warn("configuration reloaded in part", "error", err)
			continue
		}
		log.Info("configuration reloaded")
	}
}

// loadConfig loads and fully validates a config file; every problem is a
// usage error (exit 2) listing each path. Loading does not look at ctx (the
// file may be a pipe nobody writes, or on a mount that hangs, and checking
// a large file takes a while), so it runs aside: when ctx ends first,
// loadConfig returns errInterrupted at once and leaves the load to finish,
// or not, until the process exits.
func loadConfig(ctx context.Context, env *cliEnv, path string) (*config.Config, error) {
	type loaded struct {
		cfg *config.Config
		err error
	}
	done := make(chan loaded, 1)
	go func() {
		cfg, err := config.Load(path, append(app.LoadOptions(env.registry()), config.WithLookupEnv(env.lookupEnv))...)
		done <- loaded{cfg, err}
	}()
	var cfg *config.Config
	var err error
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("loading %s: %w", path, errInterrupted)
	case l := <-done:
		cfg, err = l.cfg, l.err
	}
	if err != nil {
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			return nil, usageError{fmt.Errorf("%s is not valid:\n%w", path, err)}
		}
		if errors.Is(err, os.ErrNotExist) {
			return nil, usageError{fmt.Errorf("no configuration at %s (use --config, or `parley config example > parley.yaml`)", path)}
		}
		return nil, usageError{err}
	}
	return cfg, nil
}

func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	switch c.Level {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
