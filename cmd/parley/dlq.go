package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/parley-gateway/parley/outbox"
)

func runDLQ(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return usagef("dlq needs a subcommand: list | replay SEQ... | purge SEQ...")
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprintln(env.stderr, "Usage: parley dlq list [--config FILE] [--region R]\n       parley dlq replay [--region R] SEQ...\n       parley dlq purge [--region R] SEQ...")
		return nil
	}
	if sub != "list" && sub != "replay" && sub != "purge" {
		return usagef("unknown dlq subcommand %q (list | replay | purge)", sub)
	}
	fs := newFlags(env, "dlq "+sub, "dlq "+sub+" [--config FILE] [--region R] [SEQ...]")
	cfgPath := configFlag(fs, env)
	regionFlag := fs.String("region", "", "the `region` whose dead-letter queue to use (default: every configured region for list; required with several regions otherwise)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *cfgPath)
	if err != nil {
		return err
	}
	regions, err := pickRegions(cfg, *regionFlag)
	if err != nil {
		return err
	}
	var seqs []uint64
	for _, a := range fs.Args() {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return usagef("%q is not a dead-letter sequence number (see `parley dlq list`)", a)
		}
		seqs = append(seqs, n)
	}
	if sub != "list" {
		if len(seqs) == 0 {
			return usagef("dlq %s needs at least one sequence number", sub)
		}
		if len(regions) != 1 {
			return usagef("dlq %s: pass --region (one of the configured regions)", sub)
		}
	}
	b, err := clientBus(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())
	for _, r := range regions {
		if _, err := b.Provision(ctx, r); err != nil {
			return err
		}
	}

	switch sub {
	case "list":
		tw := tabwriter.NewWriter(env.stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REGION\tSEQ\tREPLY\tCONVERSATION\tCODE\tATTEMPTS\tFAILED AT\tMESSAGE")
		n := 0
		for _, r := range regions {
			list, err := outbox.ListDLQ(ctx, b, r)
			if err != nil {
				return err
			}
			for _, d := range list {
				n++
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r, d.Seq, d.ReplyID, d.ConversationID, d.Code, d.Attempts,
					d.FailedAt.UTC().Format("2006-01-02 15:04:05"), clip(d.Message, 80))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%d dead-lettered replies\n", n)
	case "replay":
		if err := outbox.Replay(ctx, b, regions[0], seqs...); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "re-queued %d replies\n", len(seqs))
	case "purge":
		if err := outbox.Purge(ctx, b, regions[0], seqs...); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "purged %d replies\n", len(seqs))
	}
	return nil
}
