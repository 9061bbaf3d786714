package fakechat

import (
	"os"
	"testing"

	"github.com/parley-gateway/parley/normalize"
)

// FuzzParse feeds arbitrary bodies to the webhook's parsing path: it must
// never panic, and it returns an error or updates each of which is
// dead-lettered (Err), ignored, or events that are publishable.
func FuzzParse(f *testing.F) {
	for _, path := range fixtures(f) {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		updates, err := parseBody(inTestContext, body)
		if err != nil {
			if len(updates) != 0 {
				t.Fatalf("an error with %d updates", len(updates))
			}
			return
		}
		for i, u := range updates {
			if u.Raw == nil {
				t.Fatalf("update %d has no raw bytes to dead-letter", i)
			}
			if u.Err != nil {
				if len(u.Events) != 0 {
					t.Fatalf("update %d has an error and %d events", i, len(u.Events))
				}
				continue
			}
			if len(u.Events) > 0 && u.Ignored != "" {
				t.Fatalf("update %d has %d events and is ignored as %q", i, len(u.Events), u.Ignored)
			}
			for j, e := range u.Events {
				if err := e.Validate(); err != nil {
					t.Fatalf("update %d event %d invalid: %v", i, j, err)
				}
				if _, err := normalize.Encode(e); err != nil {
					t.Fatalf("update %d event %d cannot be encoded: %v", i, j, err)
				}
			}
		}
	})
}
