package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/parley-gateway/parley/config"
)

func runConfig(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return usagef("config needs a subcommand: check | example [PLATFORM]")
	}
	switch args[0] {
	case "check":
		return runConfigCheck(ctx, env, args[1:])
	case "example":
		return runConfigExample(env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintln(env.stderr, "Usage: parley config check [--config FILE]\n       parley config example [PLATFORM]")
		return nil
	}
	return usagef("unknown config subcommand %q (check | example)", args[0])
}

func runConfigCheck(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "config check", "config check [--config FILE]")
	cfgPath := configFlag(fs, env)
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
	fmt.Fprintf(env.stdout, "%s is valid.\n", *cfgPath)
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(env.stderr, "warning: %s\n", w)
	}
	regions := cfg.Regions()
	if len(regions) == 0 {
		fmt.Fprintln(env.stdout, "No connector is enabled: `parley serve` would serve nothing.")
	}
	for _, r := range regions {
		fmt.Fprintf(env.stdout, "region %s:\n", r)
		for _, c := range cfg.EnabledConnectors([]string{r}) {
			fmt.Fprintf(env.stdout, "  %-20s %s\n", c.ID, c.Platform)
		}
	}
	var disabled []string
	for _, c := range cfg.Connectors {
		if !c.Enabled {
			disabled = append(disabled, c.ID)
		}
	}
	if len(disabled) > 0 {
		fmt.Fprintf(env.stdout, "disabled: %s\n", strings.Join(disabled, ", "))
	}
	return nil
}

func runConfigExample(env *cliEnv, args []string) error {
	platforms := env.registry()
	fs := newFlags(env, "config example", "config example [PLATFORM]   (platforms: "+strings.Join(platforms.Names(), ", ")+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("config example takes at most one platform")
	}
	var samples []config.Sample
	for _, p := range platforms {
		if name := fs.Arg(0); name == "" || name == p.Platform {
			samples = append(samples, config.Sample{Platform: p.Platform, Block: p.Sample})
		}
	}
	if len(samples) == 0 {
		return usagef("platform %q is not built into this binary (it has: %s)", fs.Arg(0), strings.Join(platforms.Names(), ", "))
	}
	fmt.Fprint(env.stdout, config.Example(samples...))
	return nil
}
