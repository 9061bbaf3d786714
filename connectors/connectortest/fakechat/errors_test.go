package fakechat

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// TestClassify holds the error table to fakechat's documented answers.
func TestClassify(t *testing.T) {
	body := func(code string) []byte { return []byte(`{"error":{"code":"` + code + `","message":"m"}}`) }
	tests := []struct {
		name         string
		status       int
		header       http.Header
		body         []byte
		class        connectors.Class
		code         normalize.ErrorCode
		platformCode string
		retryAfter   time.Duration
	}{
		{"429 with Retry-After", 429, http.Header{"Retry-After": {"7"}}, body("rate_limited"), connectors.ClassRetryAfter, normalize.ErrRateLimited, "429/rate_limited", 7 * time.Second},
		{"429 without Retry-After", 429, nil, nil, connectors.ClassRetryAfter, normalize.ErrRateLimited, "429", time.Second},
		{"500", 500, nil, body("internal"), connectors.ClassTransient, normalize.ErrPlatformError, "500/internal", 0},
		{"502 from a proxy", 502, nil, []byte("<html>Bad Gateway</html>"), connectors.ClassTransient, normalize.ErrPlatformError, "502", 0},
		{"503", 503, nil, body("unavailable"), connectors.ClassTransient, normalize.ErrPlatformError, "503/unavailable", 0},
		{"401", 401, nil, body("unauthorized"), connectors.ClassPermanent, normalize.ErrUnauthorized, "401/unauthorized", 0},
		{"403 blocked", 403, nil, body("blocked"), connectors.ClassPermanent, normalize.ErrRecipientUnavailable, "403/blocked", 0},
		{"403 other", 403, nil, body("forbidden"), connectors.ClassPermanent, normalize.ErrUnauthorized, "403/forbidden", 0},
		{"400 invalid", 400, nil, body("invalid"), connectors.ClassPermanent, normalize.ErrInvalidReply, "400/invalid", 0},
		{"400 window", 400, nil, body("window"), connectors.ClassPermanent, normalize.ErrWindowClosed, "400/window", 0},
		{"404 no_user", 404, nil, body("no_user"), connectors.ClassPermanent, normalize.ErrUnknownConversation, "404/no_user", 0},
		{"404 other", 404, nil, body("not_found"), connectors.ClassPermanent, normalize.ErrPlatformError, "404/not_found", 0},
		{"413", 413, nil, body("too_large"), connectors.ClassPermanent, normalize.ErrTooLarge, "413/too_large", 0},
		{"418", 418, nil, nil, connectors.ClassPermanent, normalize.ErrPlatformError, "418", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := connectors.Classify(classify(tt.status, tt.header, tt.body))
			if e.Class != tt.class || e.Code != tt.code || e.PlatformCode != tt.platformCode || e.RetryAfter != tt.retryAfter {
				t.Fatalf("got %s %s %q %s, want %s %s %q %s", e.Class, e.Code, e.PlatformCode, e.RetryAfter, tt.class, tt.code, tt.platformCode, tt.retryAfter)
			}
		})
	}
}

func TestClassifyCutsLongBodies(t *testing.T) {
	err := classify(502, nil, []byte(strings.Repeat("é", 1000)))
	if n := len(err.Error()); n > maxErrorText+100 {
		t.Fatalf("error text of %d bytes", n)
	}
	if !strings.Contains(err.Error(), "502") {
		t.Fatalf("error %q does not say the status", err)
	}
}

func TestLateFailure(t *testing.T) {
	for code, want := range map[int]normalize.ErrorCode{
		131047: normalize.ErrWindowClosed,
		131026: normalize.ErrRecipientUnavailable,
		500:    normalize.ErrPlatformError,
		0:      normalize.ErrPlatformError,
	} {
		got := lateFailure(code, "why")
		if got.Code != want || !strings.Contains(got.Message, "why") {
			t.Errorf("lateFailure(%d) = %+v, want code %s", code, got, want)
		}
	}
	if got := lateFailure(131047, ""); got.PlatformCode != "131047" {
		t.Errorf("platform code %q", got.PlatformCode)
	}
}
