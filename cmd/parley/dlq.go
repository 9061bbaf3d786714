package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"text/tabwriter"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/ingest"
	"github.com/parley-gateway/parley/outbox"
)

func runDLQ(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return usagef("dlq needs a subcommand: list | replay ID... | purge ID...")
	}
	sub := args[0]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprintln(env.stderr, "Usage: parley dlq list [--config FILE] [--region R] [--inbound]\n       parley dlq replay [--region R] ID...\n       parley dlq purge [--region R] ID...   (ID: a reply id or a sequence number from `dlq list`)")
		return nil
	}
	if sub != "list" && sub != "replay" && sub != "purge" {
		return usagef("unknown dlq subcommand %q (list | replay | purge)", sub)
	}
	fs := newFlags(env, "dlq "+sub, "dlq "+sub+" [--config FILE] [--region R] [ID...]")
	cfgPath := configFlag(fs, env)
	regionFlag := fs.String("region", "", "the `region` whose dead-letter queue to use (default: every configured region for list; required with several regions otherwise)")
	inbound := fs.Bool("inbound", false, "the platform updates kept aside instead of stored as events (refused by the server or unmappable), not the replies; purge takes their SEQ")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := loadConfig(ctx, env, *cfgPath)
	if err != nil {
		return err
	}
	regions, err := pickRegions(cfg, *regionFlag)
	if err != nil {
		return err
	}
	ids := fs.Args()
	if sub != "list" {
		if len(ids) == 0 {
			return usagef("dlq %s needs at least one reply id or sequence number (see `parley dlq list`)", sub)
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
		if _, err := b.JS().Stream(ctx, bus.StreamName("DLQ", r)); err != nil {
			return fmt.Errorf("region %s has no dead-letter queue (has `parley serve` run with this config?): %w", r, err)
		}
	}

	switch {
	case sub == "list" && *inbound:
		return listInbound(ctx, env, b, regions)
	case sub == "list":
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
	case sub == "replay" && *inbound:
		return usagef("platform updates kept aside cannot be replayed: they could not become events (see their reason); purge them once looked at")
	case sub == "replay":
		seqs, err := resolveDLQ(ctx, b, regions[0], ids)
		if err != nil {
			return err
		}
		if err := outbox.Replay(ctx, b, regions[0], seqs...); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "re-queued %d replies\n", len(ids))
	case sub == "purge" && *inbound:
		seqs, err := resolveInbound(ctx, b, regions[0], ids)
		if err != nil {
			return err
		}
		if err := outbox.Purge(ctx, b, regions[0], seqs...); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "purged %d platform updates\n", len(ids))
	case sub == "purge":
		seqs, err := resolveDLQ(ctx, b, regions[0], ids)
		if err != nil {
			return err
		}
		if err := outbox.Purge(ctx, b, regions[0], seqs...); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "purged %d replies\n", len(ids))
	}
	return nil
}

// resolveDLQ turns each argument — a reply id, or a dead-letter sequence
// number as `dlq list` shows — into the sequence number of a dead letter.
func resolveDLQ(ctx context.Context, b *bus.Bus, region string, ids []string) ([]uint64, error) {
	list, err := outbox.ListDLQ(ctx, b, region)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, 0, len(ids))
	for _, id := range ids {
		var found uint64
		for _, d := range list {
			if d.ReplyID == id || strconv.FormatUint(d.Seq, 10) == id {
				found = d.Seq
			}
		}
		if found == 0 {
			return nil, usagef("no dead-lettered reply %q in region %s (see `parley dlq list`)", id, region)
		}
		seqs = append(seqs, found)
	}
	return seqs, nil
}

// listInbound prints the inbound dead letters: platform updates Parley
// acknowledged but kept aside. Their bytes are in the DLQ stream at the
// sequence shown (nats stream get), and `dlq purge SEQ` drops one.
func listInbound(ctx context.Context, env *cliEnv, b *bus.Bus, regions []string) error {
	tw := tabwriter.NewWriter(env.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tSEQ\tCONNECTOR\tREASON\tUPDATE\tBYTES\tKEPT AT\tDETAIL")
	n := 0
	for _, r := range regions {
		list, err := ingest.ListRejected(ctx, b, r)
		if err != nil {
			return err
		}
		for _, d := range list {
			n++
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r, d.Seq, d.Connector, d.Reason, d.UpdateID, d.Size,
				d.At.UTC().Format("2006-01-02 15:04:05"), clip(d.Detail, 80))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%d platform updates kept aside\n", n)
	return nil
}

// resolveInbound checks that each argument is the sequence number of an
// inbound dead letter.
func resolveInbound(ctx context.Context, b *bus.Bus, region string, ids []string) ([]uint64, error) {
	list, err := ingest.ListRejected(ctx, b, region)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, 0, len(ids))
	for _, id := range ids {
		i := slices.IndexFunc(list, func(d ingest.RejectedUpdate) bool { return strconv.FormatUint(d.Seq, 10) == id })
		if i < 0 {
			return nil, usagef("no platform update kept aside at %q in region %s (see `parley dlq list --inbound`)", id, region)
		}
		seqs = append(seqs, list[i].Seq)
	}
	return seqs, nil
}
