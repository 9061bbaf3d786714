package meta

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// graphServer answers the Send API as Meta does: the request is checked
// (path, bearer token, appsecret_proof, JSON), then answer decides.
func graphServer(t *testing.T, answer func(w http.ResponseWriter, req SendRequest)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v25.0/1001/messages" {
			http.Error(w, `{"error":{"message":"Unknown path","code":803}}`, http.StatusNotFound)
			return
		}
		if r.Header.Get("Authorization") != "Bearer page-token" ||
			r.URL.Query().Get("appsecret_proof") != AppSecretProof("app-secret", "page-token") {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190,"error_subcode":467}}`)
			return
		}
		var req SendRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"message":"(#100) Invalid parameter","code":100}}`)
			return
		}
		answer(w, req)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSendPostsTheMessageAndReadsItsID(t *testing.T) {
	var got SendRequest
	srv := graphServer(t, func(w http.ResponseWriter, req SendRequest) {
		got = req
		_, _ = io.WriteString(w, `{"recipient_id":"PSID-1","message_id":"m_abc"}`)
	})
	c := &Client{BaseURL: srv.URL, Version: "v25.0", AppSecret: "app-secret", HTTP: srv.Client()}
	res, err := c.Send(context.Background(), "1001", "page-token", &SendRequest{
		Recipient: Party{ID: "PSID-1"}, MessagingType: MessagingMessageTag, Tag: TagHumanAgent,
		Message: &OutMessage{Text: "hi", Metadata: "parley:rep-1",
			QuickReplies: []QuickReplyOp{{ContentType: "text", Title: "Yes", Payload: "Y"}}},
		ReplyTo: &OutReplyTo{MID: "m_0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.MessageID != "m_abc" || res.RecipientID != "PSID-1" {
		t.Errorf("result %+v", res)
	}
	if got.Recipient.ID != "PSID-1" || got.Tag != TagHumanAgent || got.Message.Metadata != "parley:rep-1" ||
		len(got.Message.QuickReplies) != 1 || got.ReplyTo.MID != "m_0" {
		t.Errorf("the platform received %+v", got)
	}
}

func TestSendClassifiesTheAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		class  connectors.Class
		code   normalize.ErrorCode
	}{
		{"rate limited", 400, nil, `{"error":{"message":"(#32) Page request limit reached","code":32}}`, connectors.ClassRetryAfter, normalize.ErrRateLimited},
		{"429 with Retry-After", 429, map[string]string{"Retry-After": "3"}, ``, connectors.ClassRetryAfter, normalize.ErrRateLimited},
		{"outside the window", 400, nil, `{"error":{"message":"(#10) This message is sent outside of allowed window.","code":10,"error_subcode":2018278}}`, connectors.ClassPermanent, normalize.ErrWindowClosed},
		{"blocked", 400, nil, `{"error":{"message":"(#551) This person isn't available right now.","code":551,"error_subcode":1545041}}`, connectors.ClassPermanent, normalize.ErrRecipientUnavailable},
		{"meta down", 503, nil, `{"error":{"message":"Service temporarily unavailable","code":2,"is_transient":true}}`, connectors.ClassTransient, normalize.ErrPlatformError},
		{"200 without message_id", 200, nil, `{"recipient_id":"PSID-1"}`, connectors.ClassTransient, normalize.ErrPlatformError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := graphServer(t, func(w http.ResponseWriter, _ SendRequest) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			c := &Client{BaseURL: srv.URL, Version: "v25.0", AppSecret: "app-secret", HTTP: srv.Client()}
			_, err := c.Send(context.Background(), "1001", "page-token", &SendRequest{Recipient: Party{ID: "P"}, Message: &OutMessage{Text: "x"}})
			ce := connectors.Classify(err)
			if err == nil || ce.Class != tt.class || ce.Code != tt.code {
				t.Errorf("Send = %v (class %s code %s), want %s %s", err, ce.Class, ce.Code, tt.class, tt.code)
			}
		})
	}
}

func TestSendWithABadTokenIsBadCredentials(t *testing.T) {
	srv := graphServer(t, func(http.ResponseWriter, SendRequest) { t.Error("a request with a bad token was served") })
	c := &Client{BaseURL: srv.URL, Version: "v25.0", AppSecret: "app-secret", HTTP: srv.Client()}
	_, err := c.Send(context.Background(), "1001", "expired-token", &SendRequest{Recipient: Party{ID: "P"}, Message: &OutMessage{Text: "x"}})
	if !IsBadCredentials(err) || connectors.Classify(err).Code != normalize.ErrUnauthorized {
		t.Errorf("Send = %v, want unauthorized and bad credentials", err)
	}
}

func TestSendTransportFailuresAreTransientAndKeepTheProofOutOfTheError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
	}))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL, Version: "v25.0", AppSecret: "app-secret", HTTP: &http.Client{Timeout: 50 * time.Millisecond}}
	_, err := c.Send(context.Background(), "1001", "page-token", &SendRequest{Recipient: Party{ID: "P"}, Message: &OutMessage{Text: "x"}})
	if connectors.Classify(err).Class != connectors.ClassTransient {
		t.Errorf("a timeout classified %v", err)
	}
	if strings.Contains(err.Error(), AppSecretProof("app-secret", "page-token")) {
		t.Errorf("the error shows the appsecret_proof: %v", err)
	}
}
