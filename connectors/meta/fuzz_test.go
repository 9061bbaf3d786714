package meta

import (
	"os"
	"strconv"
	"testing"
)

func strconvItoa(n int) string { return strconv.Itoa(n) }

// FuzzParseEnvelope: any body either parses into an envelope with a known
// object and ids, or is refused; it never panics, and every event of a
// parsed one has a kind or none.
func FuzzParseEnvelope(f *testing.F) {
	for _, name := range []string{"testdata/messenger_batch.json", "testdata/instagram_story_reply.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"object":"page","entry":[{"id":"1","messaging":[{}]}]}`))
	f.Add([]byte(`{"object":"page","entry":[{"id":"1","standby":[{"message":{"is_echo":true}}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := ParseEnvelope(body)
		if err != nil {
			return
		}
		if env.Object != ObjectPage && env.Object != ObjectInstagram || len(env.Entry) == 0 || len(env.Entry) > MaxEntries {
			t.Fatalf("accepted %+v", env)
		}
		for _, e := range env.Entry {
			if e.ID == "" {
				t.Fatal("accepted an entry without id")
			}
			for _, m := range append(e.Messaging, e.Standby...) {
				_ = m.Kind()
			}
		}
	})
}

// FuzzClassify: any answer classifies without panicking, into a known
// class with a reply.failed code.
func FuzzClassify(f *testing.F) {
	f.Add(400, []byte(`{"error":{"code":32,"message":"x"}}`), "")
	f.Add(502, []byte(`<html>`), "7")
	f.Fuzz(func(t *testing.T, status int, body []byte, retry string) {
		if Classify(status, body, retry) == nil {
			t.Fatal("no error")
		}
	})
}
