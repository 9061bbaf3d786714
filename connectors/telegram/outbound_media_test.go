package telegram

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/normalize"
)

// storedMedia is one object put in the region's object store before a
// reply sends it back.
type storedMedia struct {
	id          normalize.MediaID
	contentType string
	filename    string
	data        []byte
}

var (
	storedPhoto = storedMedia{
		id: normalize.NewMediaID(inPlatform, testBotID, "photo-1"), contentType: "image/jpeg",
		filename: "IMG_0042.jpg", data: append([]byte("\xff\xd8\xff\xe0"), bytes.Repeat([]byte("jpeg"), 500)...),
	}
	storedPDF = storedMedia{
		id: normalize.NewMediaID(inPlatform, testBotID, "doc-1"), contentType: "application/pdf",
		filename: "scan.pdf", data: []byte("%PDF-1.7\n..."),
	}
	storedNoName = storedMedia{
		id: normalize.NewMediaID(inPlatform, testBotID, "doc-2"), contentType: "application/pdf",
		data: []byte("%PDF-1.4\n..."),
	}
)

func TestSendingStoredMediaThroughTheSimulator(t *testing.T) {
	tests := []struct {
		name   string
		stored []storedMedia
		reply  normalize.Reply
		check  func(t *testing.T, sim *telegramsim.Server, sent []telegramsim.SentMessage)
	}{
		{
			name:   "a stored picture is uploaded with sendPhoto, byte for byte, with its caption",
			stored: []storedMedia{storedPhoto},
			reply: normalize.Reply{Attachments: []normalize.ReplyAttachment{
				{MediaID: storedPhoto.id, Caption: "**Your** photo"},
			}},
			check: func(t *testing.T, sim *telegramsim.Server, sent []telegramsim.SentMessage) {
				m := one(t, sent)
				if m.Method != "sendPhoto" || m.Media != "IMG_0042.jpg" {
					t.Errorf("sent %s %q, want sendPhoto of the upload IMG_0042.jpg", m.Method, m.Media)
				}
				if m.Caption != "<b>Your</b> photo" || m.ParseMode != "HTML" {
					t.Errorf("caption %q (%s)", m.Caption, m.ParseMode)
				}
				checkUpload(t, sim, m, storedPhoto.data)
			},
		},
		{
			name:   "a stored PDF is uploaded with sendDocument under the reply's filename, after the text",
			stored: []storedMedia{storedPDF},
			reply: normalize.Reply{Text: "Here is your scan", Attachments: []normalize.ReplyAttachment{
				{MediaID: storedPDF.id, Filename: "invoice-8812.pdf"},
			}},
			check: func(t *testing.T, sim *telegramsim.Server, sent []telegramsim.SentMessage) {
				if len(sent) != 2 || sent[0].Method != "sendMessage" || sent[1].Method != "sendDocument" {
					t.Fatalf("sent %v, want sendMessage then sendDocument", methods(sent))
				}
				if got := sent[1].Message.Document; got == nil || got.FileName != "invoice-8812.pdf" || sent[1].Media != "invoice-8812.pdf" {
					t.Errorf("document %q (%+v), want the upload named invoice-8812.pdf", sent[1].Media, got)
				}
				checkUpload(t, sim, sent[1], storedPDF.data)
			},
		},
		{
			name:   "without any file name the upload is named after the media id",
			stored: []storedMedia{storedNoName},
			reply:  normalize.Reply{Attachments: []normalize.ReplyAttachment{{MediaID: storedNoName.id}}},
			check: func(t *testing.T, sim *telegramsim.Server, sent []telegramsim.SentMessage) {
				m := one(t, sent)
				if want := string(storedNoName.id) + ".pdf"; m.Method != "sendDocument" || m.Media != want {
					t.Errorf("sent %s %q, want sendDocument %q", m.Method, m.Media, want)
				}
				checkUpload(t, sim, m, storedNoName.data)
			},
		},
		{
			name:   "a picture over the 10 MB photo limit goes as a document",
			stored: []storedMedia{{id: storedPhoto.id, contentType: "image/png", filename: "big.png", data: bytes.Repeat([]byte{7}, maxPhotoUpload+1)}},
			reply:  normalize.Reply{Attachments: []normalize.ReplyAttachment{{MediaID: storedPhoto.id}}},
			check: func(t *testing.T, sim *telegramsim.Server, sent []telegramsim.SentMessage) {
				m := one(t, sent)
				if m.Method != "sendDocument" || m.Media != "big.png" {
					t.Errorf("sent %s %q, want sendDocument big.png", m.Method, m.Media)
				}
				if got, _ := sim.File(m.MediaFileID); len(got) != maxPhotoUpload+1 {
					t.Errorf("uploaded %d bytes, want %d", len(got), maxPhotoUpload+1)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			sim := startSim(t)
			env := connectortest.NewEnv(t, inPlatform, "tg-out")
			for _, m := range tc.stored {
				env.PutMedia(t, m.id, m.contentType, m.filename, m.data)
			}
			c := newTestConnector(t, env, settingsFor(ModePolling, sim.URL))
			to := testAddress()
			reply := tc.reply
			reply.ID, reply.ConversationID = "rep-1", to.ConversationID
			if err := reply.Validate(); err != nil {
				t.Fatalf("test reply is invalid: %v", err)
			}
			parts, err := c.Plan(&reply, to, connectors.Admission{})
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			for i, p := range parts {
				if _, err := c.SendPart(ctx, to, p); err != nil {
					t.Fatalf("SendPart %d: %v", i, err)
				}
			}
			tc.check(t, sim, sim.Sent())
		})
	}
}

func checkUpload(t *testing.T, sim *telegramsim.Server, m telegramsim.SentMessage, want []byte) {
	t.Helper()
	got, ok := sim.File(m.MediaFileID)
	if !ok || !bytes.Equal(got, want) {
		t.Errorf("uploaded %d bytes (found %v), want the %d stored bytes", len(got), ok, len(want))
	}
}

// mediaStore is a connectors.MediaStore that answers from fixed values.
type mediaStore struct {
	info connectors.MediaInfo
	data []byte
	err  error
}

func (s mediaStore) OpenMedia(context.Context, normalize.MediaID) (io.ReadCloser, connectors.MediaInfo, error) {
	if s.err != nil {
		return nil, connectors.MediaInfo{}, s.err
	}
	return io.NopCloser(bytes.NewReader(s.data)), s.info, nil
}

func TestSendingStoredMediaFailures(t *testing.T) {
	id := normalize.NewMediaID(inPlatform, testBotID, "missing")
	tests := []struct {
		name  string
		store connectors.MediaStore // nil: the region's real object store, empty
		class connectors.Class
		code  normalize.ErrorCode
	}{
		{name: "media the region does not hold fails permanently as invalid_reply",
			class: connectors.ClassPermanent, code: normalize.ErrInvalidReply},
		{name: "a document over 50 MB fails permanently as too_large",
			store: mediaStore{info: connectors.MediaInfo{MimeType: "application/pdf", Size: maxDocumentUpload + 1}, data: []byte("x")},
			class: connectors.ClassPermanent, code: normalize.ErrTooLarge},
		{name: "media larger than its recorded size fails permanently as too_large",
			store: mediaStore{info: connectors.MediaInfo{MimeType: "application/pdf", Size: -1}, data: bytes.Repeat([]byte{1}, maxDocumentUpload+1)},
			class: connectors.ClassPermanent, code: normalize.ErrTooLarge},
		{name: "object store trouble is transient",
			store: mediaStore{err: errors.New("nats: timeout")},
			class: connectors.ClassTransient, code: normalize.ErrPlatformError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			sim := startSim(t)
			env := connectortest.NewEnv(t, inPlatform, "tg-out")
			if tc.store != nil {
				env.Deps.Media = tc.store
			}
			c := newTestConnector(t, env, settingsFor(ModePolling, sim.URL))
			parts, err := c.Plan(&normalize.Reply{Attachments: []normalize.ReplyAttachment{{MediaID: id}}}, testAddress(), connectors.Admission{})
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			_, err = c.SendPart(ctx, testAddress(), parts[0])
			got := connectors.Classify(err)
			if err == nil || got.Class != tc.class || got.Code != tc.code {
				t.Fatalf("SendPart = %v, want %s %s", err, tc.class, tc.code)
			}
			if tc.store == nil && !strings.Contains(err.Error(), "not stored in region") {
				t.Errorf("error %q does not say the media is not stored", err)
			}
			if n := len(sim.Sent()); n != 0 {
				t.Errorf("the simulator recorded %d sends, want none", n)
			}
		})
	}
}
