package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
)

func runTail(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "tail", "tail [--config FILE] [--region R] [--type T] [--conversation C] [--json] [--since DURATION]")
	cfgPath := configFlag(fs, env)
	regionFlag := fs.String("region", "", "only these comma-separated `regions`")
	typeFlag := fs.String("type", "", "only events whose type contains `T` (e.g. message.received, reply)")
	convFlag := fs.String("conversation", "", "only this conversation `id`")
	asJSON := fs.Bool("json", false, "print each event's raw JSON")
	since := fs.Duration("since", 0, "also print events of the last `DURATION` (default: only new ones)")
	if err := parseFlags(fs, args); err != nil {
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
	b, err := clientBus(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())

	lines := make(chan []byte, 256)
	for _, r := range regions {
		cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
		if *since > 0 {
			cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
			start := time.Now().Add(-*since)
			cc.OptStartTime = &start
		}
		cons, err := b.JS().OrderedConsumer(ctx, bus.StreamName("EVT", r), cc)
		if err != nil {
			return fmt.Errorf("following events of region %s: %w", r, err)
		}
		cctx, err := cons.Consume(func(m jetstream.Msg) {
			select {
			case lines <- m.Data():
			case <-ctx.Done():
			}
		})
		if err != nil {
			return fmt.Errorf("following events of region %s: %w", r, err)
		}
		defer cctx.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case data := <-lines:
			ev, err := normalize.Decode(data)
			if err != nil {
				fmt.Fprintf(env.stderr, "undecodable event: %v\n", err)
				continue
			}
			if *typeFlag != "" && !strings.Contains(string(ev.Type), *typeFlag) {
				continue
			}
			if *convFlag != "" && string(ev.Subject) != *convFlag {
				continue
			}
			if *asJSON {
				fmt.Fprintln(env.stdout, string(data))
				continue
			}
			printEventLine(env.stdout, ev)
		}
	}
}

// printEventLine prints one readable line per event.
func printEventLine(w io.Writer, ev *normalize.Event) {
	d := ev.Data
	who := ""
	if d.Sender != nil {
		who = d.Sender.Name
		if who == "" {
			who = d.Sender.Username
		}
	}
	fmt.Fprintf(w, "%s %-4s %-10s %-26s %s %s %s\n", ev.Time.UTC().Format("15:04:05"), d.Region, d.Connector,
		strings.TrimPrefix(string(ev.Type), "parley."), ev.Subject, who, Summary(ev))
}

// Summary describes an event's content in a few words.
func Summary(ev *normalize.Event) string {
	d := ev.Data
	switch {
	case d.Message != nil:
		m := d.Message
		var parts []string
		if m.Text != "" {
			parts = append(parts, fmt.Sprintf("%q", clip(m.Text, 60)))
		}
		for _, a := range m.Attachments {
			parts = append(parts, fmt.Sprintf("[%s %s %s]", a.Kind, a.MediaID, a.Status))
		}
		if m.Location != nil {
			parts = append(parts, fmt.Sprintf("[location %.5f,%.5f]", m.Location.Latitude, m.Location.Longitude))
		}
		for _, c := range m.Contacts {
			parts = append(parts, fmt.Sprintf("[contact %s]", c.Name))
		}
		if m.Postback != nil {
			parts = append(parts, fmt.Sprintf("[button %q]", m.Postback.ID))
		}
		return strings.Join(parts, " ")
	case d.Reaction != nil:
		return fmt.Sprintf("%s on message %s", d.Reaction.Emoji, d.Reaction.TargetPlatformID)
	case d.Receipt != nil:
		return strings.Join(d.Receipt.PlatformIDs, ",")
	case d.Reply != nil:
		if d.Reply.Error != nil {
			return fmt.Sprintf("reply %s: %s (%s) after %d attempts", d.Reply.ID, d.Reply.Error.Code, d.Reply.Error.Message, d.Reply.Attempts)
		}
		return fmt.Sprintf("reply %s as %s after %d attempts", d.Reply.ID, strings.Join(d.Reply.PlatformIDs, ","), d.Reply.Attempts)
	case d.Media != nil:
		if d.Media.Error != "" {
			return fmt.Sprintf("%s: %s", d.Media.ID, d.Media.Error)
		}
		return fmt.Sprintf("%s %s %d bytes sha256 %.12s", d.Media.ID, d.Media.MimeType, d.Media.Size, d.Media.SHA256)
	case d.State != nil:
		return fmt.Sprintf("%s %s", d.State.State, d.State.Reason)
	}
	return ""
}

func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
