package telegram

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest"
	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
	"github.com/parley-gateway/parley/normalize"
)

func newMediaConnector(t *testing.T) (*Connector, *telegramsim.Server) {
	t.Helper()
	sim := startSim(t)
	env := connectortest.NewEnv(t, inPlatform, "tg-media")
	return newTestConnector(t, env, settingsFor(ModePolling, sim.URL)), sim
}

func TestFetchMediaDownloadsTheFile(t *testing.T) {
	pdf := bytes.Repeat([]byte("%PDF-1.7 invoice "), 100)
	jpeg := bytes.Repeat([]byte{0xFF, 0xD8, 0xFF, 0xE0}, 500)
	tests := []struct {
		name     string
		file     func(sim *telegramsim.Server) string // returns the file_id
		want     []byte
		mimeType string
	}{
		{
			name: "a document keeps its type from the extension",
			file: func(sim *telegramsim.Server) string {
				return sim.Document(testChat, testUser, "invoice.pdf", "application/pdf", pdf).Message.Document.FileID
			},
			want: pdf, mimeType: "application/pdf",
		},
		{
			name: "the largest size of a photo is a jpeg",
			file: func(sim *telegramsim.Server) string {
				sizes := sim.Photo(testChat, testUser, "", jpeg).Message.Photo
				return sizes[len(sizes)-1].FileID
			},
			want: jpeg, mimeType: "image/jpeg",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, sim := newMediaConnector(t)
			body, info, err := c.FetchMedia(t.Context(), tc.file(sim))
			if err != nil {
				t.Fatalf("FetchMedia: %v", err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("downloaded %d bytes, want %d", len(got), len(tc.want))
			}
			if info.MimeType != tc.mimeType || info.Size != int64(len(tc.want)) || info.Filename == "" {
				t.Errorf("info %+v, want %s of %d bytes with a file name", info, tc.mimeType, len(tc.want))
			}
		})
	}
}

func TestFetchMediaFailures(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(sim *telegramsim.Server) string
		class     connectors.Class
		code      normalize.ErrorCode
		message   string // in the error text
		downloads int    // file downloads the simulator saw
	}{
		{
			name:  "a file over 20 MB is too large, without a download",
			setup: func(sim *telegramsim.Server) string { sim.AddFile("big", []byte("x"), 21<<20); return "big" },
			class: connectors.ClassPermanent, code: normalize.ErrTooLarge, message: "over 20 MB",
		},
		{
			name:  "an unknown file id is permanent",
			setup: func(*telegramsim.Server) string { return "no-such-file" },
			class: connectors.ClassPermanent, code: normalize.ErrPlatformError,
		},
		{
			name: "a failing download is transient and does not leak the token",
			setup: func(sim *telegramsim.Server) string {
				sim.AddFile("f1", []byte("data"), 0)
				// net/http retries an idempotent GET once on a reused
				// connection that closes: drop that retry too.
				sim.FailNext(telegramsim.FileDownloadKey, 2, telegramsim.DropConnection())
				return "f1"
			},
			class: connectors.ClassTransient, code: normalize.ErrPlatformError, downloads: 1,
		},
		{
			name: "a 502 from the file server is transient",
			setup: func(sim *telegramsim.Server) string {
				sim.AddFile("f2", []byte("data"), 0)
				sim.FailNext(telegramsim.FileDownloadKey, 1, telegramsim.BadGatewayHTML())
				return "f2"
			},
			class: connectors.ClassTransient, code: normalize.ErrPlatformError, message: "502", downloads: 1,
		},
		{
			name: "a getFile outage is transient",
			setup: func(sim *telegramsim.Server) string {
				sim.FailNext("getFile", 1, telegramsim.InternalServerError())
				return "f3"
			},
			class: connectors.ClassTransient, code: normalize.ErrPlatformError,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, sim := newMediaConnector(t)
			body, _, err := c.FetchMedia(t.Context(), tc.setup(sim))
			if err == nil {
				body.Close()
				t.Fatal("FetchMedia succeeded")
			}
			got := connectors.Classify(err)
			if got.Class != tc.class || got.Code != tc.code {
				t.Errorf("classified %s/%s, want %s/%s (error: %v)", got.Class, got.Code, tc.class, tc.code, err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not say %q", err, tc.message)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Errorf("error leaks the token: %v", err)
			}
			if n := sim.Requests(telegramsim.FileDownloadKey); (tc.downloads == 0) != (n == 0) {
				t.Errorf("the simulator saw %d downloads, want %d", n, tc.downloads)
			}
		})
	}
}

func TestMimeType(t *testing.T) {
	tests := []struct {
		header, path, want string
	}{
		{"image/png", "photos/file_1.jpg", "image/png"},
		{"application/octet-stream", "documents/file_2.pdf", "application/pdf"},
		{"", "photos/file_3.jpg", "image/jpeg"},
		{"", "voice/file_4", "application/octet-stream"},
	}
	for _, tc := range tests {
		if got := mimeType(tc.header, tc.path); got != tc.want {
			t.Errorf("mimeType(%q, %q) = %q, want %q", tc.header, tc.path, got, tc.want)
		}
	}
}
