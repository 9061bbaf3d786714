package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
	"github.com/parley-gateway/parley/outbox"
)

func runReply(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "reply", "reply [--config FILE] --conversation C --text T [--id ID] [--wait 2m]")
	cfgPath := configFlag(fs, env)
	conv := fs.String("conversation", "", "conversation `id` (c_…)")
	text := fs.String("text", "", "reply `text` (Markdown subset: **bold**, _italic_, `code`, [links](https://…))")
	id := fs.String("id", "", "idempotency `key` (default: a random one)")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the delivery status")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *conv == "" || *text == "" {
		return usagef("--conversation and --text are required")
	}
	if *id == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		*id = "cli-" + hex.EncodeToString(b[:])
	}
	r := &normalize.Reply{ID: *id, ConversationID: normalize.ConversationID(*conv), Text: *text}
	if err := r.Validate(); err != nil {
		return usageError{err}
	}
	cfg, err := loadConfig(ctx, env, *cfgPath)
	if err != nil {
		return err
	}
	b, err := clientBus(ctx, cfg)
	if err != nil {
		return err
	}
	defer b.Close(context.Background())

	start := time.Now().Add(-time.Second)
	region := ""
	for _, reg := range cfg.Regions() {
		kv, err := b.JS().KeyValue(ctx, bus.BucketName("directory", reg))
		if err != nil {
			return fmt.Errorf("region %s has no conversation directory (has `parley serve` run with this config?): %w", reg, err)
		}
		res, err := outbox.Submit(ctx, b, directory.New(kv, reg), r)
		if errors.Is(err, directory.ErrUnknown) {
			continue
		}
		if err != nil {
			return err
		}
		region = reg
		note := ""
		if res.Duplicate {
			note = " (duplicate id: already stored)"
		}
		fmt.Fprintf(env.stdout, "reply %s stored in the outbox of region %s%s\n", r.ID, reg, note)
		break
	}
	if region == "" {
		return fmt.Errorf("conversation %s: %w", *conv, directory.ErrUnknown)
	}
	st, err := waitStatus(ctx, b, region, r.ID, start, *wait)
	if err != nil {
		return err
	}
	printEventLine(env.stdout, st)
	if st.Type == normalize.TypeReplyFailed {
		return fmt.Errorf("reply %s failed: %s", r.ID, st.Data.Reply.Error.Code)
	}
	return nil
}

var errStatusTimeout = errors.New("no delivery status in time")

// waitStatus follows a region's status events from start until the
// reply.sent or reply.failed of replyID arrives, for at most wait; it
// returns errInterrupted as soon as ctx ends.
func waitStatus(ctx context.Context, b *bus.Bus, region, replyID string, start time.Time, wait time.Duration) (*normalize.Event, error) {
	waitCtx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	stopped := func() error {
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("waiting for the status of reply %s (it is stored in the outbox): %w", replyID, errInterrupted)
		case waitCtx.Err() != nil:
			return fmt.Errorf("reply %s: %w after %s", replyID, errStatusTimeout, wait)
		}
		return nil
	}
	cons, err := b.JS().OrderedConsumer(waitCtx, bus.StreamName("EVT", region), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{b.Subjects().Events(region)},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &start,
	})
	if err != nil {
		if stop := stopped(); stop != nil {
			return nil, stop
		}
		return nil, fmt.Errorf("following status events: %w", err)
	}
	for {
		if stop := stopped(); stop != nil {
			return nil, stop
		}
		// Pulls stay short: one lost in a reconnect costs five seconds,
		// not the rest of the wait.
		pullCtx, cancelPull := context.WithTimeout(waitCtx, 5*time.Second)
		m, err := cons.Next(jetstream.FetchContext(pullCtx))
		cancelPull()
		if err != nil {
			continue
		}
		ev, err := normalize.Decode(m.Data())
		if err != nil || ev.Data.Reply == nil || ev.Data.Reply.ID != replyID {
			continue
		}
		return ev, nil
	}
}
