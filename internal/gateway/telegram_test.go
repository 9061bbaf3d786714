package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/gateway"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/normalize"
)

// TestTelegramPhotoEndsStoredInTheObjectStore wires the real Telegram
// connector, in polling mode, to the Telegram simulator through the whole
// inbound path: poller under its lease → ingest (event + media job) →
// directory → media worker → object store → media.stored.
func TestTelegramPhotoEndsStoredInTheObjectStore(t *testing.T) {
	const token = "4242:TEST-token_x"
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)

	sim := telegramsim.New(telegramsim.Options{
		Token:           token,
		PerChatInterval: telegramsim.Disabled,
		GlobalPerSecond: telegramsim.Disabled,
		GroupPerMinute:  telegramsim.Disabled,
	})
	srv, err := sim.Start(context.Background())
	if err != nil {
		t.Fatalf("starting the telegram simulator: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	settings := connectortest.YAMLSettings(fmt.Sprintf("token: %q\nmode: polling\napi_url: %s\npoll_timeout: 1s\n", token, srv.URL))
	o := options(b, r, "a", gateway.Spec{
		ID: "tg-eu", Platform: "telegram", Region: region, Descriptor: telegram.Descriptor, Settings: settings,
	})
	rg := start(t, o)

	w, err := media.NewWorker(media.Options{
		Bus: b, Handles: r, Region: region, Lookup: rg.g.MediaFetcher, RetryBase: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- w.Run(wctx) }()
	t.Cleanup(func() {
		wcancel()
		select {
		case <-wdone:
		case <-time.After(10 * time.Second):
			t.Error("media worker did not stop")
		}
	})

	waitFor(t, 10*time.Second, "the telegram connector to run", func() bool {
		s := statusOf(rg.g, "tg-eu")
		return s.State == normalize.StateRunning && s.LeaseHeld
	})

	photo := bytes.Repeat([]byte("\xff\xd8\xff\xe0 a photo of a parcel "), 20000)
	user := models.User{ID: 1001, FirstName: "Maria", Username: "marialopez"}
	sim.Enqueue(sim.Photo(1001, user, "is this damaged?", photo))

	var msg, stored *normalize.Event
	waitFor(t, 15*time.Second, "message.received and media.stored", func() bool {
		msg, stored = nil, nil
		for _, ev := range allEvents(t, r) {
			switch ev.Type {
			case normalize.TypeMessageReceived:
				msg = ev
			case normalize.TypeMediaStored:
				stored = ev
			case normalize.TypeMediaFailed:
				t.Fatalf("media failed: %s", ev.Data.Media.Error)
			}
		}
		return msg != nil && stored != nil
	})

	if len(msg.Data.Message.Attachments) != 1 {
		t.Fatalf("%d attachments, want 1", len(msg.Data.Message.Attachments))
	}
	att := msg.Data.Message.Attachments[0]
	if att.Status != normalize.MediaPending || att.Caption != "is this damaged?" {
		t.Errorf("attachment status %q caption %q, want pending with the caption", att.Status, att.Caption)
	}
	m := stored.Data.Media
	sum := sha256.Sum256(photo)
	if m.ID != att.MediaID || m.Size != int64(len(photo)) || m.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("media.stored %+v, want media %s of %d bytes", m, att.MediaID, len(photo))
	}
	if stored.Subject != msg.Subject || m.MessageID != msg.Data.Message.PlatformID {
		t.Errorf("media.stored is not tied to its message: subject %s vs %s, message %s vs %s",
			stored.Subject, msg.Subject, m.MessageID, msg.Data.Message.PlatformID)
	}

	rc, _, size, err := media.Open(t.Context(), []*bus.Region{r}, string(att.MediaID))
	if err != nil {
		t.Fatalf("opening stored media: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, photo) || size != int64(len(photo)) {
		t.Errorf("object store holds %d bytes, want the photo's %d", len(got), len(photo))
	}

	e, _, err := directory.New(r.Directory, region).Get(t.Context(), msg.Subject)
	if err != nil {
		t.Fatalf("directory entry: %v", err)
	}
	if e.PlatformID != "1001" || e.Connector != "tg-eu" {
		t.Errorf("directory entry %+v", e)
	}

	// A reply sends the stored photo back by its media id: the connector
	// reads it from its region's object store and uploads it.
	conn, _, ok := rg.g.Connector("tg-eu")
	if !ok {
		t.Fatal("no tg-eu connector")
	}
	to := connectors.Address{ConversationID: msg.Subject, Kind: e.Kind, PlatformID: e.PlatformID}
	parts, err := conn.Plan(&normalize.Reply{ID: "rep-1", ConversationID: msg.Subject,
		Attachments: []normalize.ReplyAttachment{{MediaID: att.MediaID, Caption: "this one?"}}}, to)
	if err != nil || len(parts) != 1 {
		t.Fatalf("Plan = %d parts, %v", len(parts), err)
	}
	if _, err := conn.SendPart(t.Context(), to, parts[0]); err != nil {
		t.Fatalf("sending the stored photo back: %v", err)
	}
	sent := sim.Sent()
	if len(sent) != 1 || sent[0].Method != "sendPhoto" || sent[0].Caption != "this one?" {
		t.Fatalf("sent %+v, want one sendPhoto with the caption", sent)
	}
	if up, _ := sim.File(sent[0].MediaFileID); !bytes.Equal(up, photo) {
		t.Errorf("uploaded %d bytes, want the stored photo's %d", len(up), len(photo))
	}
}

// allEvents decodes every event of a region's stream.
func allEvents(t *testing.T, r *bus.Region) []*normalize.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	info, err := r.Events.Info(ctx)
	if err != nil {
		t.Fatalf("events stream info: %v", err)
	}
	var out []*normalize.Event
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := r.Events.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev, err := normalize.Decode(m.Data)
		if err != nil {
			t.Fatalf("stored event does not decode: %v", err)
		}
		out = append(out, ev)
	}
	return out
}
