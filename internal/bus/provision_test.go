package bus_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
)

func TestProvisionCreatesTheRegionsResources(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) { o.LeaseTTL = 3 * time.Second })
	r := bustest.ProvisionRegion(t, b, "eu-west")
	ctx := boundedCtx(t, 10*time.Second)

	streams := []struct {
		s         jetstream.Stream
		name      string
		subject   string
		retention jetstream.RetentionPolicy
		maxAge    time.Duration
		dupes     time.Duration
		discard   jetstream.DiscardPolicy
	}{
		{r.Events, "PARLEY_EVT_EU_WEST", "parley.evt.eu-west.>", jetstream.LimitsPolicy, bus.DefaultEventMaxAge, bus.DefaultDedupeWindow, jetstream.DiscardOld},
		{r.Commands, "PARLEY_CMD_EU_WEST", "parley.cmd.eu-west.>", jetstream.WorkQueuePolicy, 7 * 24 * time.Hour, bus.DefaultDedupeWindow, jetstream.DiscardNew},
		{r.DLQ, "PARLEY_DLQ_EU_WEST", "parley.dlq.eu-west.>", jetstream.LimitsPolicy, bus.DefaultDLQMaxAge, bus.DefaultDedupeWindow, jetstream.DiscardOld},
		{r.MediaJobs, "PARLEY_MEDIA_EU_WEST", "parley.media.eu-west.>", jetstream.WorkQueuePolicy, 7 * 24 * time.Hour, bus.DefaultDedupeWindow, jetstream.DiscardOld},
	}
	for _, want := range streams {
		info, err := want.s.Info(ctx)
		if err != nil {
			t.Fatalf("%s: %v", want.name, err)
		}
		c := info.Config
		if c.Name != want.name || len(c.Subjects) != 1 || c.Subjects[0] != want.subject ||
			c.Retention != want.retention || c.Storage != jetstream.FileStorage || c.MaxAge != want.maxAge ||
			c.Duplicates != want.dupes || c.Replicas != 1 || c.Discard != want.discard {
			t.Errorf("%s config = %+v", want.name, c)
		}
	}

	buckets := []struct {
		kv   jetstream.KeyValue
		name string
		ttl  time.Duration
	}{
		{r.Directory, "parley_directory_eu-west", 0},
		{r.Leases, "parley_leases_eu-west", 3 * time.Second},
		{r.Cursors, "parley_cursors_eu-west", 0},
		{r.Outbox, "parley_outbox_eu-west", 7 * 24 * time.Hour},
	}
	for _, want := range buckets {
		st, err := want.kv.Status(ctx)
		if err != nil {
			t.Fatalf("%s: %v", want.name, err)
		}
		if st.Bucket() != want.name || st.History() != 1 || st.TTL() != want.ttl {
			t.Errorf("%s: bucket %s history %d ttl %s, want ttl %s", want.name, st.Bucket(), st.History(), st.TTL(), want.ttl)
		}
	}
	ost, err := r.Media.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ost.Bucket() != "parley_media_eu-west" || ost.TTL() != 30*24*time.Hour || ost.Storage() != jetstream.FileStorage {
		t.Errorf("media object store: bucket %s ttl %s", ost.Bucket(), ost.TTL())
	}
}

func TestProvisionTwiceIsIdempotentAndKeepsData(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, "eu")
	ctx := boundedCtx(t, 20*time.Second)

	s := b.Subjects()
	if _, err := b.Publish(ctx,
		bus.Message{Subject: s.Event("eu", "telegram", "tg", "c_1", "message"), MsgID: "e_1"},
		bus.Message{Subject: s.Command("eu", "telegram", "tg", "c_1"), MsgID: "rep-1"},
	); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Directory.Put(ctx, "c_1", []byte(`{"platform":"telegram"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Media.PutBytes(ctx, "m_1", []byte("jpeg bytes")); err != nil {
		t.Fatal(err)
	}

	r2 := bustest.ProvisionRegion(t, b, "eu")
	for name, st := range map[string]jetstream.Stream{"events": r2.Events, "commands": r2.Commands} {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 1 {
			t.Errorf("%s stream holds %d messages after re-provisioning, want 1", name, info.State.Msgs)
		}
	}
	if e, err := r2.Directory.Get(ctx, "c_1"); err != nil || string(e.Value()) != `{"platform":"telegram"}` {
		t.Errorf("directory entry after re-provisioning: %v", err)
	}
	if data, err := r2.Media.GetBytes(ctx, "m_1"); err != nil || string(data) != "jpeg bytes" {
		t.Errorf("media object after re-provisioning: %q, %v", data, err)
	}
}

func TestProvisionUpdatesAChangedConfiguration(t *testing.T) {
	b := bustest.Start(t)
	ctx := boundedCtx(t, 20*time.Second)
	// An older deployment created the events stream with a short max age.
	if _, err := b.JS().CreateStream(ctx, jetstream.StreamConfig{
		Name:     "PARLEY_EVT_EU",
		Subjects: []string{"parley.evt.eu.>"},
		MaxAge:   time.Hour,
		Storage:  jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS().Publish(ctx, "parley.evt.eu.telegram.tg.c_1.message", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	r := bustest.ProvisionRegion(t, b, "eu")
	info, err := r.Events.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != bus.DefaultEventMaxAge || info.Config.Duplicates != bus.DefaultDedupeWindow {
		t.Errorf("events stream not updated: max age %s, duplicates %s", info.Config.MaxAge, info.Config.Duplicates)
	}
	if info.State.Msgs != 1 {
		t.Errorf("events stream holds %d messages after the update, want 1", info.State.Msgs)
	}
}

func TestProvisionFailsLoudlyOnAnIncompatibleStream(t *testing.T) {
	b := bustest.Start(t)
	ctx := boundedCtx(t, 20*time.Second)
	// The outbox must be a work queue; somebody created it with limits.
	if _, err := b.JS().CreateStream(ctx, jetstream.StreamConfig{
		Name:      "PARLEY_CMD_EU",
		Subjects:  []string{"parley.cmd.eu.>"},
		Retention: jetstream.LimitsPolicy,
		Storage:   jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS().Publish(ctx, "parley.cmd.eu.telegram.tg.c_1.send", []byte("{}")); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err := b.Provision(ctx, "eu")
	if err == nil {
		t.Fatal("Provision succeeded over an incompatible PARLEY_CMD_EU")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "PARLEY_CMD_EU") {
		t.Errorf("error %q does not name the stream", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Provision took %s to fail: a configuration error must not be retried", d)
	}
	s, err := b.JS().Stream(ctx, "PARLEY_CMD_EU")
	if err != nil {
		t.Fatalf("the incompatible stream is gone: %v", err)
	}
	info := s.CachedInfo()
	if info.Config.Retention != jetstream.LimitsPolicy || info.State.Msgs != 1 {
		t.Errorf("the incompatible stream was changed: retention %s, %d messages", info.Config.Retention, info.State.Msgs)
	}
}

func TestProvisionClampsTheDedupeWindowToMaxAge(t *testing.T) {
	b := bustest.Start(t, func(o *bus.Options) {
		o.EventMaxAge = time.Hour
		o.DedupeWindow = 48 * time.Hour
	})
	r := bustest.ProvisionRegion(t, b, "eu")
	info, err := r.Events.Info(boundedCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Duplicates != time.Hour {
		t.Errorf("events duplicates window = %s, want it clamped to the max age 1h", info.Config.Duplicates)
	}
}

func TestProvisionRejectsAnInvalidRegion(t *testing.T) {
	b := bustest.Start(t)
	for _, region := range []string{"", "EU", "eu.west", "eu_west", "-eu", strings.Repeat("a", 17)} {
		if _, err := b.Provision(boundedCtx(t, 5*time.Second), region); err == nil {
			t.Errorf("Provision(%q) succeeded", region)
		}
	}
}
