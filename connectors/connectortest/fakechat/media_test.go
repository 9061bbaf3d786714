package fakechat

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/simkit"
	"github.com/parley-gateway/parley/normalize"
)

// fetchRef is the FetchRef the mapping gives an attachment of account.
func fetchRef(account string, a fakechatsim.Attachment) string { return account + " " + a.URL }

func TestFetchMediaDownloadsWithTheAccountsToken(t *testing.T) {
	e, sim := sendEnv(t, fakechatsim.Options{})
	png := []byte("\x89PNG fake bytes")
	att := sim.AddMedia("1002", png, "image/png", "photo.png")
	body, info, err := e.c.FetchMedia(sendCtx(t), fetchRef("1002", att))
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	got, _ := io.ReadAll(body)
	if string(got) != string(png) || info.MimeType != "image/png" || info.Size != int64(len(png)) || info.Filename != "photo.png" {
		t.Fatalf("got %q %+v", got, info)
	}
	reqs := sim.Requests().Filter(simkit.Match("GET", "/media/"))
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer token-1002" {
		t.Fatalf("requests %+v", reqs)
	}
}

// The whole path: a pushed photo's attachment, as mapped, downloads.
func TestFetchMediaOfAMappedAttachment(t *testing.T) {
	e, sim, _ := hookEnv(t, fakechatsim.Options{})
	att := sim.AddMedia("1001", []byte("bytes"), "application/pdf", "invoice.pdf")
	if _, err := sim.Push(sendCtx(t), "1001", sim.Message(maria, "my invoice", att)); err != nil {
		t.Fatal(err)
	}
	a := e.pub.stored()[0].Data.Message.Attachments[0]
	if a.Kind != normalize.AttachFile || a.Status != normalize.MediaPending {
		t.Fatalf("attachment %+v", a)
	}
	body, _, err := e.c.FetchMedia(sendCtx(t), a.FetchRef)
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
}

func TestFetchMediaFailures(t *testing.T) {
	tests := []struct {
		name  string
		ref   func(sim *fakechatsim.Server) string
		class connectors.Class
		code  normalize.ErrorCode
	}{
		{"unknown media", func(sim *fakechatsim.Server) string { return "1001 " + sim.URL + "/media/nope" }, connectors.ClassPermanent, normalize.ErrPlatformError},
		{"expired media", func(sim *fakechatsim.Server) string {
			a := sim.AddMedia("1001", []byte("x"), "image/png", "")
			sim.RemoveMedia(a.URL)
			return fetchRef("1001", a)
		}, connectors.ClassPermanent, normalize.ErrPlatformError},
		{"another account's media", func(sim *fakechatsim.Server) string {
			return fetchRef("1002", sim.AddMedia("1001", []byte("x"), "image/png", ""))
		}, connectors.ClassPermanent, normalize.ErrUnauthorized},
		{"a 503", func(sim *fakechatsim.Server) string {
			sim.FailNext(fakechatsim.KeyMedia, 1, fakechatsim.Unavailable())
			return fetchRef("1001", sim.AddMedia("1001", []byte("x"), "image/png", ""))
		}, connectors.ClassTransient, normalize.ErrPlatformError},
		{"a dropped connection", func(sim *fakechatsim.Server) string {
			sim.FailNext(fakechatsim.KeyMedia, 1, simkit.Drop())
			return fetchRef("1001", sim.AddMedia("1001", []byte("x"), "image/png", ""))
		}, connectors.ClassTransient, normalize.ErrPlatformError},
		{"an account not in the settings", func(*fakechatsim.Server) string { return "4242 https://cdn.example/x" }, connectors.ClassPermanent, normalize.ErrPlatformError},
		{"a ref without a url", func(*fakechatsim.Server) string { return "1001" }, connectors.ClassPermanent, normalize.ErrPlatformError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, sim := sendEnv(t, fakechatsim.Options{})
			body, _, err := e.c.FetchMedia(sendCtx(t), tt.ref(sim))
			if err == nil {
				body.Close()
				t.Fatal("the fetch succeeded")
			}
			if c := connectors.Classify(err); c.Class != tt.class || c.Code != tt.code {
				t.Fatalf("%v: %s %s, want %s %s", err, c.Class, c.Code, tt.class, tt.code)
			}
		})
	}
}

// The token goes only to api_url's origin.
func TestFetchMediaKeepsTheTokenOffOtherHosts(t *testing.T) {
	var auth string
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		_, _ = w.Write([]byte("bytes"))
	}))
	t.Cleanup(cdn.Close)
	e, _ := sendEnv(t, fakechatsim.Options{})
	body, info, err := e.c.FetchMedia(sendCtx(t), "1001 "+cdn.URL+"/files/a.bin")
	if err != nil {
		t.Fatal(err)
	}
	body.Close()
	if auth != "" {
		t.Fatalf("the token went to another host: %q", auth)
	}
	if info.Filename != "a.bin" {
		t.Fatalf("filename %q", info.Filename)
	}
}
