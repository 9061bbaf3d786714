package telegram

import (
	"os"
	"testing"

	"github.com/parley-gateway/parley/normalize"
)

// FuzzParseUpdate feeds arbitrary bodies to the webhook's parsing path: it
// must never panic, and whatever it maps must be publishable.
func FuzzParseUpdate(f *testing.F) {
	for _, path := range inFixtures(f) {
		raw, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		u, err := parseUpdate(raw)
		if err != nil {
			return
		}
		res, err := mapUpdate(inTestContext, u)
		if err != nil {
			return
		}
		for i, e := range res.Events {
			if err := e.Validate(); err != nil {
				t.Fatalf("event %d invalid: %v", i, err)
			}
			if _, err := normalize.Encode(e); err != nil {
				t.Fatalf("event %d cannot be encoded: %v", i, err)
			}
		}
		if r := res.Reachability; r != nil && !normalize.ValidID("c_", string(r.Conversation)) {
			t.Fatalf("reachability conversation %q is not a conversation id", r.Conversation)
		}
		if len(res.Events) > 0 && res.Ignored != "" {
			t.Fatalf("both %d events and ignored %q", len(res.Events), res.Ignored)
		}
	})
}
