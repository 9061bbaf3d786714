package gateway_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/internal/gateway"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/internal/wait"
	"github.com/parley-gateway/parley/normalize"
)

// TestWebhookPhotoEndsStoredInTheObjectStore wires a real webhook
// connector to its simulator through the whole inbound path: signed push →
// the connector's handler as the gateway serves it → ingest (event + media
// job) → directory → media worker → object store → media.stored.
func TestWebhookPhotoEndsStoredInTheObjectStore(t *testing.T) {
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	sim, err := fakechatsim.Start(fakechatsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })

	o := options(b, r, "a", gateway.Spec{
		ID: "fc-eu", Platform: "fakechat", Region: region, Descriptor: fakechat.Descriptor,
		Settings: connectortest.YAMLSettings(sim.Settings()),
	})
	rg := start(t, o)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h, ok := rg.g.Webhook("fc-eu")
		if !ok {
			http.NotFound(w, req)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	sim.Attach(srv.URL + "/webhooks/fc-eu")

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
	wait.For(t, 10*time.Second, "the connector to run", func() bool { return statusOf(rg.g, "fc-eu").State == normalize.StateRunning })

	photo := bytes.Repeat([]byte("\xff\xd8\xff\xe0 a photo of a parcel "), 20000)
	att := sim.AddMedia(fakechatsim.DefaultAccount, photo, "image/jpeg", "parcel.jpg")
	customer := fakechatsim.User{ID: "u-1001", Name: "Maria"}
	out, err := sim.Push(t.Context(), fakechatsim.DefaultAccount, sim.Message(customer, "is this damaged?", att))
	if err != nil || !out.Acked {
		t.Fatalf("push: %+v, %v", out, err)
	}

	var msg, stored *normalize.Event
	wait.For(t, 15*time.Second, "message.received and media.stored", func() bool {
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
	a := msg.Data.Message.Attachments[0]
	if a.Status != normalize.MediaPending {
		t.Errorf("attachment status %q, want pending", a.Status)
	}
	m := stored.Data.Media
	sum := sha256.Sum256(photo)
	if m.ID != a.MediaID || m.Size != int64(len(photo)) || m.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("media.stored %+v, want media %s of %d bytes", m, a.MediaID, len(photo))
	}
	if stored.Subject != msg.Subject || m.MessageID != msg.Data.Message.PlatformID {
		t.Errorf("media.stored is not tied to its message: subject %s vs %s", stored.Subject, msg.Subject)
	}
	rc, _, size, err := media.Open(t.Context(), []*bus.Region{r}, string(a.MediaID))
	if err != nil {
		t.Fatalf("opening stored media: %v", err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if !bytes.Equal(got, photo) || size != int64(len(photo)) {
		t.Errorf("object store holds %d bytes, want the photo's %d", len(got), len(photo))
	}
	e, _, err := directory.New(r.Directory, region).Get(t.Context(), msg.Subject)
	if err != nil {
		t.Fatalf("directory entry: %v", err)
	}
	if e.PlatformID != customer.ID || e.Connector != "fc-eu" || e.Account != fakechatsim.DefaultAccount {
		t.Errorf("directory entry %+v", e)
	}
	// The connector's policy reached ingest: the reply window is recorded.
	if e.WindowExpiresAt == nil || !e.WindowExpiresAt.Equal(e.LastInboundAt.Add(24*time.Hour)) {
		t.Errorf("window expires at %v, want 24h after %s", e.WindowExpiresAt, e.LastInboundAt)
	}
}
