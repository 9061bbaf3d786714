package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Messaging types of the Send API.
const (
	MessagingResponse   = "RESPONSE"    // inside the 24-hour window
	MessagingMessageTag = "MESSAGE_TAG" // with Tag, e.g. HUMAN_AGENT (7 days)
)

// TagHumanAgent is the tag of a human agent's reply after the standard
// window (up to 7 days; the only tag Instagram accepts).
const TagHumanAgent = "HUMAN_AGENT"

// SendRequest is one Send API call: a message, or a sender action
// (typing_on, typing_off, mark_seen) alone.
type SendRequest struct {
	Recipient     Party       `json:"recipient"`
	MessagingType string      `json:"messaging_type,omitempty"`
	Tag           string      `json:"tag,omitempty"`
	Message       *OutMessage `json:"message,omitempty"`
	SenderAction  string      `json:"sender_action,omitempty"`
	ReplyTo       *OutReplyTo `json:"reply_to,omitempty"`
}

// OutMessage is the message of a SendRequest.
type OutMessage struct {
	Text         string         `json:"text,omitempty"`
	Attachment   *OutAttachment `json:"attachment,omitempty"`
	QuickReplies []QuickReplyOp `json:"quick_replies,omitempty"`
	// Metadata comes back in the echo of this message: how an echo is
	// recognised as Parley's own send.
	Metadata string `json:"metadata,omitempty"`
}

// OutAttachment is an attachment sent by URL.
type OutAttachment struct {
	Type    string               `json:"type"` // image, video, audio, file
	Payload OutAttachmentPayload `json:"payload"`
}

// OutAttachmentPayload points at the attachment's content.
type OutAttachmentPayload struct {
	URL        string `json:"url"`
	IsReusable bool   `json:"is_reusable,omitempty"`
}

// QuickReplyOp is one quick-reply button (at most 13, title ≤ 20 chars).
type QuickReplyOp struct {
	ContentType string `json:"content_type"` // "text"
	Title       string `json:"title"`
	Payload     string `json:"payload"`
}

// OutReplyTo makes the message a reply to another.
type OutReplyTo struct {
	MID string `json:"mid"`
}

// SendResult is the Send API's answer.
type SendResult struct {
	RecipientID string `json:"recipient_id"`
	MessageID   string `json:"message_id"`
}

// Client calls the Send API of one app. Its zero value is not usable:
// BaseURL and Version are required.
type Client struct {
	BaseURL   string // "https://graph.facebook.com", or a simulator's URL
	Version   string // "v25.0": pinned in configuration
	AppSecret string // signs every call with appsecret_proof; "" sends none
	HTTP      *http.Client
}

// maxAnswer bounds the answer body read.
const maxAnswer = 1 << 20

// Send posts req to /{version}/{accountID}/messages with the account's
// token. Errors are classified (Classify); a transport failure is
// transient.
func (c *Client) Send(ctx context.Context, accountID, token string, req *SendRequest) (SendResult, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return SendResult{}, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("encoding a send request: %w", err))
	}
	u := strings.TrimRight(c.BaseURL, "/") + "/" + c.Version + "/" + url.PathEscape(accountID) + "/messages"
	if c.AppSecret != "" {
		u += "?appsecret_proof=" + AppSecretProof(c.AppSecret, token)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return SendResult{}, connectors.Permanent(normalize.ErrPlatformError, "", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+token)
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		// The request may or may not have reached Meta; the outbox's
		// claim and marker make a retry safe to reason about.
		return SendResult{}, connectors.Transient("", redactURL(err))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return SendResult{}, connectors.Transient(fmt.Sprint(resp.StatusCode), fmt.Errorf("reading the send answer: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		return SendResult{}, Classify(resp.StatusCode, answer, resp.Header.Get("Retry-After"))
	}
	var res SendResult
	if err := json.Unmarshal(answer, &res); err != nil {
		return SendResult{}, connectors.Transient("200", fmt.Errorf("decoding the send answer: %w", err))
	}
	if res.MessageID == "" && req.Message != nil {
		return SendResult{}, connectors.Transient("200", errors.New("the send answer has no message_id"))
	}
	return res, nil
}

// redactURL keeps the appsecret_proof out of logged transport errors.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if i := strings.IndexByte(ue.URL, '?'); i >= 0 {
			return &url.Error{Op: ue.Op, URL: ue.URL[:i], Err: ue.Err}
		}
	}
	return err
}
