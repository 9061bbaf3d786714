package meta

import (
	"errors"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

func TestVerifySignature(t *testing.T) {
	secret := []byte("app-secret")
	body := []byte(`{"object":"page","entry":[{"id":"1","messaging":[{"message":{"text":"\u00e4"}}]}]}`)
	good := SignatureValue(secret, body)
	tests := []struct {
		name   string
		body   []byte
		header string
		want   error
	}{
		{"signed by the app secret", body, good, nil},
		{"no header", body, "", ErrNoSignature},
		{"sha1 form only", body, "sha1=0123", ErrBadSignature},
		{"not hex", body, "sha256=zz", ErrBadSignature},
		{"short sum", body, "sha256=abcd", ErrBadSignature},
		{"another secret", body, SignatureValue([]byte("other"), body), ErrBadSignature},
		// Meta signs the escaped form it sent: the same JSON re-encoded
		// with the character itself is a different body.
		{"re-encoded body", []byte(`{"object":"page","entry":[{"id":"1","messaging":[{"message":{"text":"ä"}}]}]}`), good, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := VerifySignature(secret, tt.body, tt.header); !errors.Is(err, tt.want) {
				t.Errorf("VerifySignature = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHandshake(t *testing.T) {
	q := func(mode, token, challenge string) url.Values {
		return url.Values{"hub.mode": {mode}, "hub.verify_token": {token}, "hub.challenge": {challenge}}
	}
	tests := []struct {
		name   string
		q      url.Values
		token  string
		want   string
		wantOK bool
	}{
		{"subscribe with the token", q("subscribe", "tok", "1158201444"), "tok", "1158201444", true},
		{"wrong token", q("subscribe", "nope", "1"), "tok", "", false},
		{"other mode", q("unsubscribe", "tok", "1"), "tok", "", false},
		{"no token configured", q("subscribe", "", "1"), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Handshake(tt.q, tt.token)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Handshake = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAppSecretProof(t *testing.T) {
	// HMAC-SHA256(key "secret", message "token"), computed with Python's hmac.
	if got, want := AppSecretProof("secret", "token"), "e941110e3d2bfe82621f0e3e1434730d7305d106c5f68c87165d0b27a4611a4a"; got != want {
		t.Errorf("AppSecretProof = %s, want %s", got, want)
	}
}

func TestParseEnvelope(t *testing.T) {
	body, err := os.ReadFile("testdata/messenger_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	if env.Object != ObjectPage || len(env.Entry) != 5 {
		t.Fatalf("object %q with %d entries", env.Object, len(env.Entry))
	}
	var kinds []string
	for _, e := range env.Entry {
		for _, m := range e.Messaging {
			kinds = append(kinds, m.Kind())
		}
	}
	want := []string{KindMessage, KindPostback, KindEcho, KindRead, KindReaction}
	if len(kinds) != len(want) {
		t.Fatalf("kinds %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Errorf("event %d is %q, want %q", i, kinds[i], want[i])
		}
	}
	m := env.Entry[0].Messaging[0].Message
	if m.Text != "Hola ä" || m.ReplyTo == nil || m.ReplyTo.MID != "m_0" {
		t.Errorf("message %+v", m)
	}
	echo := env.Entry[2].Messaging[0].Message
	if echo.AppID.String() != "1517776481860111" || echo.Metadata != "parley:rep-1" {
		t.Errorf("echo %+v", echo)
	}
	if w := env.Entry[3].Messaging[0].Read.Watermark; w != 1764760000600 {
		t.Errorf("read watermark %d", w)
	}

	body, err = os.ReadFile("testdata/instagram_story_reply.json")
	if err != nil {
		t.Fatal(err)
	}
	env, err = ParseEnvelope(body)
	if err != nil {
		t.Fatal(err)
	}
	ev := env.Entry[0].Messaging
	if env.Object != ObjectInstagram || ev[0].Message.ReplyTo.Story == nil || ev[0].Message.ReplyTo.Story.ID != "1799" || ev[1].Kind() != KindDeleted {
		t.Errorf("instagram envelope %+v", env)
	}
}

func TestParseEnvelopeRefusesWhatIsNotAnEnvelope(t *testing.T) {
	for name, body := range map[string]string{
		"not json":         `{"object":`,
		"no object":        `{"entry":[{"id":"1"}]}`,
		"another object":   `{"object":"whatsapp_business_account","entry":[{"id":"1"}]}`,
		"no entry":         `{"object":"page","entry":[]}`,
		"entry without id": `{"object":"page","entry":[{"time":1}]}`,
		"trailing data":    `{"object":"page","entry":[{"id":"1"}]} {}`,
		"wrong types":      `{"object":"page","entry":[{"id":1}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseEnvelope([]byte(body)); !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseEnvelope(%s) = %v, want ErrMalformed", body, err)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	graph := func(code, sub int, transient bool) []byte {
		b := `{"error":{"message":"m","type":"OAuthException","code":` + strconvItoa(code)
		if sub != 0 {
			b += `,"error_subcode":` + strconvItoa(sub)
		}
		if transient {
			b += `,"is_transient":true`
		}
		return []byte(b + `,"fbtrace_id":"AbC"}}`)
	}
	tests := []struct {
		name      string
		status    int
		body      []byte
		retry     string
		class     connectors.Class
		code      normalize.ErrorCode
		platform  string
		wait      time.Duration
		accountly bool
	}{
		{"page rate limit", 400, graph(32, 0, false), "", connectors.ClassRetryAfter, normalize.ErrRateLimited, "32", RateLimitBackoff, true},
		{"app rate limit with Retry-After", 400, graph(4, 0, false), "30", connectors.ClassRetryAfter, normalize.ErrRateLimited, "4", 30 * time.Second, true},
		{"messenger send limit", 400, graph(613, 0, false), "", connectors.ClassRetryAfter, normalize.ErrRateLimited, "613", RateLimitBackoff, true},
		{"messenger 80006", 400, graph(80006, 0, false), "", connectors.ClassRetryAfter, normalize.ErrRateLimited, "80006", RateLimitBackoff, true},
		{"instagram 80002", 400, graph(80002, 0, false), "", connectors.ClassRetryAfter, normalize.ErrRateLimited, "80002", RateLimitBackoff, true},
		{"user limit 17", 400, graph(17, 0, false), "", connectors.ClassRetryAfter, normalize.ErrRateLimited, "17", RateLimitBackoff, true},
		{"outside the window", 400, graph(10, 2018278, false), "", connectors.ClassPermanent, normalize.ErrWindowClosed, "10/2018278", 0, false},
		{"tag required", 400, graph(10, 2018065, false), "", connectors.ClassPermanent, normalize.ErrWindowClosed, "10/2018065", 0, false},
		{"instagram outside the window", 400, graph(10, 2534022, false), "", connectors.ClassPermanent, normalize.ErrWindowClosed, "10/2534022", 0, false},
		{"person unavailable", 400, graph(551, 1545041, false), "", connectors.ClassPermanent, normalize.ErrRecipientUnavailable, "551/1545041", 0, false},
		{"no matching user", 400, graph(100, 2018001, false), "", connectors.ClassPermanent, normalize.ErrRecipientUnavailable, "100/2018001", 0, false},
		{"attachment too large", 400, graph(100, 2018109, false), "", connectors.ClassPermanent, normalize.ErrTooLarge, "100/2018109", 0, false},
		{"attachment upload failed", 400, graph(100, 2018047, false), "", connectors.ClassTransient, normalize.ErrPlatformError, "100/2018047", 0, false},
		{"invalid parameter", 400, graph(100, 0, false), "", connectors.ClassPermanent, normalize.ErrInvalidReply, "100", 0, false},
		{"token expired", 400, graph(190, 463, false), "", connectors.ClassPermanent, normalize.ErrUnauthorized, "190/463", 0, false},
		{"permission missing", 403, graph(200, 0, false), "", connectors.ClassPermanent, normalize.ErrUnauthorized, "200", 0, false},
		{"unknown error", 500, graph(1, 0, false), "", connectors.ClassTransient, normalize.ErrPlatformError, "1", 0, false},
		{"service unavailable", 503, graph(2, 0, false), "", connectors.ClassTransient, normalize.ErrPlatformError, "2", 0, false},
		{"temporary send failure", 400, graph(1200, 0, false), "", connectors.ClassTransient, normalize.ErrPlatformError, "1200", 0, false},
		{"is_transient wins", 400, graph(9999, 0, true), "", connectors.ClassTransient, normalize.ErrPlatformError, "9999", 0, false},
		{"policy block", 400, graph(368, 0, false), "", connectors.ClassPermanent, normalize.ErrPlatformError, "368", 0, false},
		{"proxy 502 page", 502, []byte("<html>bad gateway</html>"), "", connectors.ClassTransient, normalize.ErrPlatformError, "502", 0, false},
		{"bare 429", 429, []byte(""), "5", connectors.ClassRetryAfter, normalize.ErrRateLimited, "429", 5 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := connectors.Classify(Classify(tt.status, tt.body, tt.retry))
			if ce.Class != tt.class || ce.Code != tt.code || ce.PlatformCode != tt.platform {
				t.Errorf("class %s code %s platform %q; want %s %s %q", ce.Class, ce.Code, ce.PlatformCode, tt.class, tt.code, tt.platform)
			}
			if tt.class == connectors.ClassRetryAfter && (ce.RetryAfter != tt.wait || (ce.Scope == connectors.ScopeAccount) != tt.accountly) {
				t.Errorf("retry after %s scope %s; want %s account-wide %v", ce.RetryAfter, ce.Scope, tt.wait, tt.accountly)
			}
		})
	}
	if !IsBadCredentials(Classify(400, graph(190, 460, false), "")) || IsBadCredentials(Classify(400, graph(100, 0, false), "")) {
		t.Error("IsBadCredentials does not tell a dead token from an invalid parameter")
	}
}
