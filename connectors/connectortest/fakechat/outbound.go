package fakechat

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
	"unicode/utf8"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Limits of one fakechat message.
const (
	maxTextRunes        = 2000
	maxChoices          = 10
	maxChoiceIDBytes    = 100
	maxChoiceTitleRunes = 20
)

// maxAnswerBytes bounds what is read of an answer of the messages API.
const maxAnswerBytes = 64 << 10

// outMessage is one call of the messages API, and its JSON is the call's
// body. SendPart fills To from the address.
type outMessage struct {
	To         string         `json:"to"`
	Text       string         `json:"text,omitempty"`
	Choices    []outChoice    `json:"choices,omitempty"`
	ReplyTo    string         `json:"reply_to,omitempty"`
	Attachment *outAttachment `json:"attachment,omitempty"`
	Tag        string         `json:"tag,omitempty"`
}

type outChoice struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

type outAttachment struct {
	URL string `json:"url"`
}

// Plan renders a reply as fakechat messages, in order:
//
//   - the text, from the Markdown subset to plain text (fakechat shows no
//     formatting), split at natural boundaries into messages of at most
//     2000 characters;
//   - then one message per attachment, by URL, with its caption as the
//     message's text (a caption over 2000 characters goes on as text
//     messages of its own). fakechat fetches the URL itself and cannot
//     name the file: the reply's filename is not sent. An attachment by
//     media_id fails: fakechat has no upload.
//
// Choices (at most 10; id at most 100 bytes, title at most 20 characters)
// ride on the last text message, or on the last part when there is no
// text. reply_to quotes on the first part only; the admission's tag
// (HUMAN_AGENT past the standard window) goes on every part.
func (c *Connector) Plan(reply *normalize.Reply, _ connectors.Address, adm connectors.Admission) ([]connectors.Part, error) {
	if reply == nil {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", errors.New("no reply"))
	}
	choices, err := planChoices(reply.Choices)
	if err != nil {
		return nil, err
	}

	var parts []outMessage
	for _, chunk := range splitText(reply.Text) {
		parts = append(parts, outMessage{Text: chunk})
	}
	lastText := len(parts) - 1
	for i, a := range reply.Attachments {
		if a.URL == "" {
			return nil, connectors.Permanent(normalize.ErrUnsupported, "",
				fmt.Errorf("attachments[%d]: fakechat sends files by url only; a stored file (media_id) cannot be sent", i))
		}
		captions := splitText(a.Caption)
		file := outMessage{Attachment: &outAttachment{URL: a.URL}}
		if len(captions) > 0 {
			file.Text, captions = captions[0], captions[1:]
		}
		parts = append(parts, file)
		for _, chunk := range captions {
			parts = append(parts, outMessage{Text: chunk})
		}
	}
	if len(parts) == 0 {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", errors.New("nothing to send: the reply has no text and no attachments"))
	}

	if len(choices) > 0 {
		at := lastText
		if at < 0 {
			at = len(parts) - 1
		}
		parts[at].Choices = choices
	}
	parts[0].ReplyTo = reply.ReplyTo
	out := make([]connectors.Part, len(parts))
	for i := range parts {
		parts[i].Tag = adm.Tag
		out[i] = parts[i]
	}
	return out, nil
}

// splitText renders Markdown as plain text in chunks fakechat accepts.
func splitText(md string) []string {
	var out []string
	for _, chunk := range normalize.SplitMarkdown(md, maxTextRunes, normalize.RenderPlain, normalize.RuneLen) {
		if text := normalize.MarkdownToPlain(chunk); strings.TrimSpace(text) != "" {
			out = append(out, text)
		}
	}
	return out
}

// planChoices checks choices against fakechat's limits.
func planChoices(choices []normalize.Choice) ([]outChoice, error) {
	if len(choices) > maxChoices {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("choices: fakechat shows at most %d, the reply has %d", maxChoices, len(choices)))
	}
	var out []outChoice
	for i, ch := range choices {
		switch {
		case ch.ID == "" || len(ch.ID) > maxChoiceIDBytes:
			return nil, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("choices[%d].id: fakechat needs 1 to %d bytes", i, maxChoiceIDBytes))
		case strings.TrimSpace(ch.Title) == "" || utf8.RuneCountInString(ch.Title) > maxChoiceTitleRunes:
			return nil, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("choices[%d].title: fakechat needs 1 to %d characters", i, maxChoiceTitleRunes))
		}
		out = append(out, outChoice{ID: ch.ID, Title: ch.Title})
	}
	return out, nil
}

// SendPart makes one call of the messages API, with the access token of
// the address's account, and classifies its failure (errors.go). It does
// nothing else.
func (c *Connector) SendPart(ctx context.Context, to connectors.Address, part connectors.Part) (connectors.SentPart, error) {
	m, ok := part.(outMessage)
	if !ok {
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("part of type %T is not a fakechat message", part))
	}
	token, ok := c.cfg.tokens[to.Account]
	if !ok {
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrUnknownConversation, "",
			fmt.Errorf("fakechat account %q is not in this connector's settings", to.Account))
	}
	if to.PlatformID == "" {
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrUnknownConversation, "", errors.New("the conversation has no fakechat customer id"))
	}
	m.To = to.PlatformID
	body, err := json.Marshal(m)
	if err != nil {
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("encoding fakechat message: %w", err))
	}
	endpoint := c.cfg.apiURL + "/v1/" + url.PathEscape(to.Account) + "/messages"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrPlatformError, "", fmt.Errorf("building fakechat request: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token.Reveal())

	resp, err := c.deps.HTTPClient.Do(req)
	if err != nil {
		return connectors.SentPart{}, connectors.Transient("", fmt.Errorf("sending fakechat message to customer %s: %w", to.PlatformID, err))
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil && resp.StatusCode != http.StatusOK {
		return connectors.SentPart{}, connectors.Transient("", fmt.Errorf("reading fakechat answer for customer %s: %w", to.PlatformID, err))
	}
	if resp.StatusCode != http.StatusOK {
		return connectors.SentPart{}, classify(resp.StatusCode, resp.Header, answer)
	}
	var sent struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(answer, &sent); err != nil || sent.ID == "" {
		// The message went out but cannot be named; retrying would send it
		// twice.
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrPlatformError, "200",
			fmt.Errorf("fakechat accepted the message to customer %s but answered without its id", to.PlatformID))
	}
	return connectors.SentPart{PlatformID: sent.ID}, nil
}
