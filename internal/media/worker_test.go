package media_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/bustest"
	"github.com/parley-gateway/parley/internal/ingest"
	"github.com/parley-gateway/parley/internal/media"
	"github.com/parley-gateway/parley/normalize"
)

const (
	region    = "eu"
	platform  = "testchat"
	connector = "tc-eu"
	account   = "bot-1"
)

// step is what the fake platform does on one FetchMedia call.
type step struct {
	err   error
	body  []byte
	mime  string
	delay time.Duration // spread over the body's reads, to make a slow download
}

// fetcher is a fake platform media endpoint: each ref plays its steps in
// order, repeating the last one.
type fetcher struct {
	mu    sync.Mutex
	steps map[string][]step
	calls map[string]int
}

func newFetcher() *fetcher {
	return &fetcher{steps: map[string][]step{}, calls: map[string]int{}}
}

func (f *fetcher) on(ref string, steps ...step) { f.mu.Lock(); f.steps[ref] = steps; f.mu.Unlock() }

func (f *fetcher) callsOf(ref string) int { f.mu.Lock(); defer f.mu.Unlock(); return f.calls[ref] }

func (f *fetcher) FetchMedia(ctx context.Context, ref string) (io.ReadCloser, connectors.MediaInfo, error) {
	f.mu.Lock()
	n := f.calls[ref]
	f.calls[ref]++
	steps := f.steps[ref]
	f.mu.Unlock()
	if len(steps) == 0 {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, "404", errors.New("no such file"))
	}
	s := steps[min(n, len(steps)-1)]
	if s.err != nil {
		return nil, connectors.MediaInfo{}, s.err
	}
	var r io.Reader = bytes.NewReader(s.body)
	if s.delay > 0 {
		r = &slowReader{ctx: ctx, data: s.body, pause: s.delay / 4}
	}
	return io.NopCloser(r), connectors.MediaInfo{MimeType: s.mime, Size: int64(len(s.body))}, nil
}

// slowReader returns its data in four pieces with a pause before each.
type slowReader struct {
	ctx   context.Context
	data  []byte
	pause time.Duration
	reads int
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	select {
	case <-s.ctx.Done():
		return 0, s.ctx.Err()
	case <-time.After(s.pause):
	}
	n := max(len(s.data)/(4-min(s.reads, 3)), 1)
	n = min(n, len(p), len(s.data))
	copy(p, s.data[:n])
	s.data = s.data[n:]
	s.reads++
	return n, nil
}

type fixture struct {
	bus *bus.Bus
	reg *bus.Region
	pub *ingest.Publisher
	f   *fetcher
}

// start provisions a region and runs a worker on it until the test ends.
func start(t *testing.T, adjust func(*media.Options)) *fixture {
	t.Helper()
	b := bustest.Start(t)
	r := bustest.ProvisionRegion(t, b, region)
	fx := &fixture{bus: b, reg: r, f: newFetcher()}
	fx.pub = ingest.New(ingest.Options{Bus: b, Region: region, Platform: platform, Connector: connector, Account: account})
	o := media.Options{
		Bus: b, Handles: r, Region: region,
		Lookup: func(id string) (connectors.MediaFetcher, bool) {
			if id != connector {
				return nil, false
			}
			return fx.f, true
		},
		RetryBase: 20 * time.Millisecond,
		AckWait:   2 * time.Second,
	}
	if adjust != nil {
		adjust(&o)
	}
	w, err := media.NewWorker(o)
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("worker Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("worker Run did not return after cancel")
		}
	})
	return fx
}

func message(msgID string, attachments ...normalize.Attachment) *normalize.Event {
	conv := normalize.NewConversationID(platform, account, "42")
	return &normalize.Event{
		ID:      normalize.NewEventID(platform, account, "msg", msgID),
		Source:  normalize.Source(region, platform, connector),
		Type:    normalize.TypeMessageReceived,
		Subject: conv,
		Time:    time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC),
		Data: normalize.Data{
			Region: region, Platform: platform, Connector: connector,
			Conversation: &normalize.Conversation{ID: conv, PlatformID: "42", Kind: normalize.KindDirect},
			Sender:       &normalize.Sender{ID: normalize.NewSenderID(platform, account, "42"), PlatformID: "42"},
			Message:      &normalize.Message{PlatformID: msgID, Attachments: attachments},
			ReceivedAt:   time.Date(2026, 11, 20, 9, 30, 1, 0, time.UTC),
		},
	}
}

func attachment(ref string) normalize.Attachment {
	return normalize.Attachment{
		Kind: normalize.AttachImage, MediaID: normalize.NewMediaID(platform, account, ref),
		MimeType: "image/jpeg", Status: normalize.MediaPending, FetchRef: ref,
	}
}

// waitMediaEvent waits for the media event of id and returns it.
func waitMediaEvent(t *testing.T, r *bus.Region, id normalize.MediaID, within time.Duration) *normalize.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	for {
		if ev := findMediaEvent(t, ctx, r, id); ev != nil {
			return ev
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no media event for %s within %s", id, within)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func findMediaEvent(t *testing.T, ctx context.Context, r *bus.Region, id normalize.MediaID) *normalize.Event {
	t.Helper()
	info, err := r.Events.Info(ctx)
	if err != nil {
		return nil
	}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := r.Events.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ev, err := normalize.Decode(m.Data)
		if err != nil {
			t.Fatalf("stored event does not decode: %v", err)
		}
		if ev.Data.Media != nil && ev.Data.Media.ID == id {
			return ev
		}
	}
	return nil
}

// countMediaEvents counts media events of id in the events stream.
func countMediaEvents(t *testing.T, r *bus.Region) int {
	t.Helper()
	info, err := r.Events.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := r.Events.GetMsg(t.Context(), seq)
		if err == nil && strings.HasSuffix(m.Subject, ".media") {
			n++
		}
	}
	return n
}

func waitQueueEmpty(t *testing.T, r *bus.Region) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for {
		info, err := r.MediaJobs.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("media queue not empty: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestWorker(t *testing.T) {
	photo := bytes.Repeat([]byte("\xff\xd8jpeg-bytes"), 30000) // several object chunks
	tests := []struct {
		name  string
		opts  func(*media.Options)
		steps []step
		att   func(normalize.Attachment) normalize.Attachment
		check func(t *testing.T, fx *fixture, ev *normalize.Event, att normalize.Attachment)
	}{
		{
			name:  "fetched bytes are stored and announced",
			steps: []step{{body: photo, mime: "image/jpeg"}},
			check: func(t *testing.T, fx *fixture, ev *normalize.Event, att normalize.Attachment) {
				if ev.Type != normalize.TypeMediaStored {
					t.Fatalf("type %s, want media.stored (error %q)", ev.Type, ev.Data.Media.Error)
				}
				m := ev.Data.Media
				if m.Size != int64(len(photo)) || m.SHA256 != sha(photo) || m.MimeType != "image/jpeg" {
					t.Errorf("media part %+v, want size %d sha %s", m, len(photo), sha(photo))
				}
				if m.MessageID != "m1" || m.AttachmentIndex != 0 {
					t.Errorf("media part does not name its message: %+v", m)
				}
				if ev.Subject == "" || ev.Data.Conversation == nil || ev.Data.Sender == nil {
					t.Error("media event lacks conversation or sender")
				}
				if ev.ID != media.StoredEventID(att.MediaID) {
					t.Errorf("event id %s, want %s", ev.ID, media.StoredEventID(att.MediaID))
				}
				rc, ct, size, err := media.Open(t.Context(), []*bus.Region{fx.reg}, string(att.MediaID))
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer rc.Close()
				got, err := io.ReadAll(rc)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, photo) || ct != "image/jpeg" || size != int64(len(photo)) {
					t.Errorf("stored %d bytes of %s (size %d), want %d of image/jpeg", len(got), ct, size, len(photo))
				}
				info, err := fx.reg.Media.GetInfo(t.Context(), string(att.MediaID))
				if err != nil {
					t.Fatal(err)
				}
				if info.Metadata["sha256"] != sha(photo) {
					t.Errorf("object metadata sha256 %q", info.Metadata["sha256"])
				}
				waitQueueEmpty(t, fx.reg)
			},
		},
		{
			name:  "a permanent fetch error is announced as failed with its reason",
			steps: []step{{err: connectors.Permanent(normalize.ErrTooLarge, "400", errors.New("file is too big"))}},
			check: func(t *testing.T, fx *fixture, ev *normalize.Event, att normalize.Attachment) {
				if ev.Type != normalize.TypeMediaFailed || ev.Data.Media.Error != "file is too big" {
					t.Errorf("got %s with error %q, want media.failed: file is too big", ev.Type, ev.Data.Media.Error)
				}
				if n := fx.f.callsOf(att.FetchRef); n != 1 {
					t.Errorf("a permanent failure was fetched %d times", n)
				}
				if _, err := fx.reg.Media.GetInfo(t.Context(), string(att.MediaID)); !errors.Is(err, jetstream.ErrObjectNotFound) {
					t.Errorf("object exists after a failure: %v", err)
				}
				waitQueueEmpty(t, fx.reg)
			},
		},
		{
			name: "transient fetch errors are retried until the bytes are stored",
			steps: []step{
				{err: connectors.Transient("502", errors.New("bad gateway"))},
				{err: errors.New("connection reset")},
				{body: []byte("GIF89a tiny")},
			},
			check: func(t *testing.T, fx *fixture, ev *normalize.Event, att normalize.Attachment) {
				if ev.Type != normalize.TypeMediaStored {
					t.Fatalf("type %s (error %q), want media.stored", ev.Type, ev.Data.Media.Error)
				}
				if n := fx.f.callsOf(att.FetchRef); n != 3 {
					t.Errorf("fetched %d times, want 3", n)
				}
				// The platform said nothing of the type; the attachment did.
				if ev.Data.Media.MimeType != "image/jpeg" {
					t.Errorf("mime %q", ev.Data.Media.MimeType)
				}
			},
		},
		{
			name:  "transient errors past MaxAttempts end in failed",
			opts:  func(o *media.Options) { o.MaxAttempts = 3 },
			steps: []step{{err: connectors.Transient("503", errors.New("unavailable"))}},
			check: func(t *testing.T, fx *fixture, ev *normalize.Event, att normalize.Attachment) {
				if ev.Type != normalize.TypeMediaFailed || !strings.Contains(ev.Data.Media.Error, "after 3 attempts") {
					t.Errorf("got %s with error %q, want failed after 3 attempts", ev.Type, ev.Data.Media.Error)
				}
				if n := fx.f.callsOf(att.FetchRef); n != 3 {
					t.Errorf("fetched %d times, want 3", n)
				}
			},
		},
		{
			name:  "a retry-after from the platform is honoured",
			steps: []step{{err: connectors.RetryAfter(300*time.Millisecond, "429", errors.New("slow down"))}, {body: []byte("x")}},
			check: func(t *testing.T, fx *fixture, ev *normalize.Event, _ normalize.Attachment) {
				if ev.Type != normalize.TypeMediaStored {
					t.Fatalf("type %s, want stored", ev.Type)
				}
			},
		},
		{
			name: "an attachment flagged unavailable fails at once without a fetch",
			att: func(a normalize.Attachment) normalize.Attachment {
				a.Status, a.UnavailableReason = normalize.MediaUnavailable, "over the 20 MB bot download limit"
				return a
			},
			steps: []step{{body: []byte("never fetched")}},
			check: func(t *testing.T, fx *fixture, ev *normalize.Event, att normalize.Attachment) {
				if ev.Type != normalize.TypeMediaFailed || ev.Data.Media.Error != "over the 20 MB bot download limit" {
					t.Errorf("got %s with %q", ev.Type, ev.Data.Media.Error)
				}
				if n := fx.f.callsOf(att.FetchRef); n != 0 {
					t.Errorf("fetched %d times", n)
				}
			},
		},
		{
			name: "a download longer than AckWait is kept alive and fetched once",
			// Two AckWaits long; heartbeats every AckWait/4 leave room for
			// scheduling stalls on a busy test machine.
			opts: func(o *media.Options) { o.AckWait = 2 * time.Second },
			steps: []step{
				{body: photo, mime: "image/jpeg", delay: 4 * time.Second},
			},
			check: func(t *testing.T, fx *fixture, ev *normalize.Event, att normalize.Attachment) {
				if ev.Type != normalize.TypeMediaStored || ev.Data.Media.Size != int64(len(photo)) {
					t.Fatalf("got %s size %d", ev.Type, ev.Data.Media.Size)
				}
				if n := fx.f.callsOf(att.FetchRef); n != 1 {
					t.Errorf("slow download fetched %d times, want 1 (redelivered during download?)", n)
				}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := start(t, tt.opts)
			ref := fmt.Sprintf("file-%d", i)
			fx.f.on(ref, tt.steps...)
			att := attachment(ref)
			if tt.att != nil {
				att = tt.att(att)
			}
			if err := fx.pub.Publish(t.Context(), message("m1", att)); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			ev := waitMediaEvent(t, fx.reg, att.MediaID, 10*time.Second)
			tt.check(t, fx, ev, att)
		})
	}
}

func TestWorkerReannouncesStoredMediaWithoutFetching(t *testing.T) {
	fx := start(t, nil)
	fx.f.on("same-file", step{body: []byte("hello"), mime: "text/plain"})
	att := attachment("same-file")
	if err := fx.pub.Publish(t.Context(), message("m1", att)); err != nil {
		t.Fatal(err)
	}
	waitMediaEvent(t, fx.reg, att.MediaID, 10*time.Second)
	waitQueueEmpty(t, fx.reg)

	// An edit of the message carries the same attachment: a new job.
	edit := message("m1", att)
	edit.ID = normalize.NewEventID(platform, account, "edit", "m1")
	edit.Type = normalize.TypeMessageEdited
	if err := fx.pub.Publish(t.Context(), edit); err != nil {
		t.Fatal(err)
	}
	waitQueueEmpty(t, fx.reg)
	if n := fx.f.callsOf("same-file"); n != 1 {
		t.Errorf("stored media fetched %d times, want 1", n)
	}
	if n := countMediaEvents(t, fx.reg); n != 1 {
		t.Errorf("%d media events, want 1 (the re-announcement is a duplicate)", n)
	}
}

func TestWorkerTermsMalformedJobs(t *testing.T) {
	fx := start(t, nil)
	subj := fx.bus.Subjects().MediaJob(region, platform, connector, "c_x")
	if _, err := fx.bus.Publish(t.Context(), bus.Message{Subject: subj, MsgID: "junk-1", Data: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	waitQueueEmpty(t, fx.reg)
}

func TestOpen(t *testing.T) {
	b := bustest.Start(t)
	eu := bustest.ProvisionRegion(t, b, "eu")
	us := bustest.ProvisionRegion(t, b, "us")
	id := string(normalize.NewMediaID(platform, account, "f"))
	if _, err := us.Media.Put(t.Context(), jetstream.ObjectMeta{Name: id}, strings.NewReader("bytes")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      string
		wantErr error
		wantCT  string
	}{
		{name: "media in a later region is found", id: id, wantCT: "application/octet-stream"},
		{name: "unknown media is not found", id: string(normalize.NewMediaID(platform, account, "other")), wantErr: media.ErrNotFound},
		{name: "a malformed id is not found", id: "../etc/passwd", wantErr: media.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, ct, size, err := media.Open(t.Context(), []*bus.Region{eu, us}, tt.id)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer rc.Close()
			b, _ := io.ReadAll(rc)
			if string(b) != "bytes" || ct != tt.wantCT || size != 5 {
				t.Errorf("got %q %s %d", b, ct, size)
			}
		})
	}
}

func TestStoreOpensOnlyItsOwnRegion(t *testing.T) {
	b := bustest.Start(t)
	eu := bustest.ProvisionRegion(t, b, "eu")
	us := bustest.ProvisionRegion(t, b, "us")
	id := normalize.NewMediaID(platform, account, "f")
	if _, err := eu.Media.Put(t.Context(), media.ObjectMeta(id, "application/pdf", "scan.pdf"), strings.NewReader("%PDF")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		region   *bus.Region
		id       normalize.MediaID
		wantInfo connectors.MediaInfo
		notFound bool
	}{
		{name: "media of the region opens with its stored type and name", region: eu, id: id,
			wantInfo: connectors.MediaInfo{MimeType: "application/pdf", Size: 4, Filename: "scan.pdf"}},
		{name: "media of another region is not found", region: us, id: id, notFound: true},
		{name: "a malformed id is not found", region: eu, id: "../etc/passwd", notFound: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, info, err := media.NewStore(tt.region).OpenMedia(t.Context(), tt.id)
			if tt.notFound {
				if !errors.Is(err, connectors.ErrNotFound) || !errors.Is(err, media.ErrNotFound) {
					t.Fatalf("OpenMedia = %v, want not found", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenMedia: %v", err)
			}
			defer rc.Close()
			got, _ := io.ReadAll(rc)
			if string(got) != "%PDF" || info != tt.wantInfo {
				t.Errorf("got %q %+v, want %+v", got, info, tt.wantInfo)
			}
		})
	}
}
