package telegram

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// Bot API limits on what one message carries, in UTF-16 code units of the
// text left after entity parsing.
const (
	maxTextUnits    = 4096
	maxCaptionUnits = 1024
)

// maxCallbackData is the Bot API's limit on an inline button's
// callback_data, which carries a choice id.
const maxCallbackData = 64

// Bot API limits on files a bot uploads.
const (
	maxPhotoUpload    = 10 << 20
	maxDocumentUpload = 50 << 20
)

// Bot API methods a part is sent with.
const (
	methodSendMessage  = "sendMessage"
	methodSendPhoto    = "sendPhoto"
	methodSendDocument = "sendDocument"
	// methodSendStored uploads stored media with sendPhoto or sendDocument,
	// chosen by SendPart from what is stored: Plan does no I/O, so it
	// cannot know the content type or size.
	methodSendStored = "sendStored"
)

// photoTypes are stored content types uploaded with sendPhoto.
var photoTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// imageExtensions are sent with sendPhoto, which Telegram shows inline and
// recompresses; everything else goes as a document, byte for byte.
var imageExtensions = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".gif": true, ".webp": true}

// outPart is one Bot API call of a planned reply.
type outPart struct {
	Method   string            // methodSendMessage, methodSendPhoto, methodSendDocument or methodSendStored
	Text     string            // HTML: the message's text, or the file's caption
	FileURL  string            // for sendPhoto and sendDocument: Telegram fetches it
	MediaID  normalize.MediaID // for methodSendStored: the stored media to upload
	Filename string            // for methodSendStored: the reply's file name, "" for the stored one
	ReplyTo  int               // message_id to quote; 0 for none
	ThreadID int               // message_thread_id (forum topic); 0 for none
	Choices  []normalize.Choice
}

// Plan renders a reply as Bot API calls, in order:
//
//   - the text, split at natural boundaries into messages of at most 4096
//     UTF-16 units, formatted as HTML;
//   - then one message per attachment, by URL: sendPhoto for image file
//     names (.jpg .jpeg .png .gif .webp), sendDocument for anything else.
//     A caption over 1024 units cannot ride on the file; it follows the
//     file as text messages of its own. Telegram names a document after its
//     URL; the reply's filename cannot be applied to a file sent by URL.
//   - an attachment by media_id is uploaded from the region's object store
//     (see openStored); its caption is handled as above.
//
// Choices become an inline keyboard, one button per row, whose
// callback_data is the choice id; it is attached to the last text message,
// or to the last part when the reply has no text. reply_to quotes on the
// first part only, and allows sending when the quoted message is gone.
func (c *Connector) Plan(reply *normalize.Reply, to connectors.Address, _ connectors.Admission) ([]connectors.Part, error) {
	if reply == nil {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", errors.New("no reply"))
	}
	for i, ch := range reply.Choices {
		if len(ch.ID) > maxCallbackData {
			return nil, connectors.Permanent(normalize.ErrInvalidReply, "",
				fmt.Errorf("choices[%d].id: telegram carries at most %d bytes of callback_data, not %d", i, maxCallbackData, len(ch.ID)))
		}
	}
	thread, err := positiveInt(to.ThreadID)
	if err != nil {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("thread %q is not a telegram topic id", to.ThreadID))
	}
	replyTo, err := positiveInt(reply.ReplyTo)
	if err != nil {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("reply_to %q is not a telegram message id", reply.ReplyTo))
	}

	var parts []outPart
	lastText := -1
	if strings.TrimSpace(reply.Text) != "" {
		chunks, err := splitText(reply.Text, maxTextUnits)
		if err != nil {
			return nil, err
		}
		for _, chunk := range chunks {
			parts = append(parts, outPart{Method: methodSendMessage, Text: chunk})
		}
		lastText = len(parts) - 1
	}
	for i, a := range reply.Attachments {
		var file outPart
		switch {
		case a.MediaID != "":
			file = outPart{Method: methodSendStored, MediaID: a.MediaID, Filename: a.Filename}
		case a.URL != "":
			file = outPart{Method: methodSendDocument, FileURL: a.URL}
			if isImage(a) {
				file.Method = methodSendPhoto
			}
		default:
			return nil, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("attachments[%d]: url or media_id is required", i))
		}
		var overflow []string
		if strings.TrimSpace(a.Caption) != "" {
			if normalize.UTF16Len(normalize.MarkdownToPlain(a.Caption)) <= maxCaptionUnits {
				file.Text = normalize.MarkdownToHTML(a.Caption)
			} else if overflow, err = splitText(a.Caption, maxTextUnits); err != nil {
				return nil, err
			}
		}
		parts = append(parts, file)
		for _, chunk := range overflow {
			parts = append(parts, outPart{Method: methodSendMessage, Text: chunk})
		}
	}
	if len(parts) == 0 {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", errors.New("nothing to send: the reply has no text and no attachments"))
	}

	parts[0].ReplyTo = replyTo
	for i := range parts {
		parts[i].ThreadID = thread
	}
	if len(reply.Choices) > 0 {
		k := lastText
		if k < 0 {
			k = len(parts) - 1
		}
		parts[k].Choices = reply.Choices
	}
	out := make([]connectors.Part, len(parts))
	for i, p := range parts {
		out[i] = p
	}
	return out, nil
}

// splitText cuts Markdown text at natural boundaries into chunks that
// each fit limit, and renders them as HTML. A chunk is measured as its
// plain text, because Telegram counts the text left after parsing the
// HTML: measuring the markup would split formatted text far too early.
// The plain rendering of a link ("text (url)") is longer than what Telegram
// counts, so the measure errs on the safe side.
func splitText(text string, limit int) ([]string, error) {
	chunks := normalize.SplitMarkdown(text, limit, normalize.RenderPlain, normalize.UTF16Len)
	out := make([]string, 0, len(chunks))
	for _, chunk := range chunks {
		if html := normalize.MarkdownToHTML(chunk); strings.TrimSpace(html) != "" {
			out = append(out, html)
		}
	}
	if len(out) == 0 {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "", errors.New("the text renders to nothing"))
	}
	return out, nil
}

// isImage reports whether an attachment looks like a picture, by its file
// name or else its URL's path.
func isImage(a normalize.ReplyAttachment) bool {
	name := a.Filename
	if name == "" {
		if u, err := url.Parse(a.URL); err == nil {
			name = u.Path
		}
	}
	return imageExtensions[strings.ToLower(path.Ext(name))]
}

// positiveInt parses an optional id: "" is 0.
func positiveInt(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive integer", s)
	}
	return n, nil
}

// inlineKeyboard is reply_markup with callback buttons only. The SDK's own
// InlineKeyboardButton always encodes an empty copy_text, which the Bot API
// refuses (BUTTON_COPY_TEXT_INVALID).
type inlineKeyboard struct {
	InlineKeyboard [][]callbackButton `json:"inline_keyboard"`
}

type callbackButton struct {
	Text         string `json:"text"`
	CallbackData string `json:"callback_data"`
}

func keyboard(choices []normalize.Choice) *inlineKeyboard {
	k := &inlineKeyboard{InlineKeyboard: make([][]callbackButton, len(choices))}
	for i, ch := range choices {
		k.InlineKeyboard[i] = []callbackButton{{Text: ch.Title, CallbackData: ch.ID}}
	}
	return k
}

// chatID is the chat_id to send to: a numeric id, or "@channelname".
func chatID(to connectors.Address) (any, error) {
	if to.PlatformID == "" {
		return nil, errors.New("the conversation has no telegram chat id")
	}
	if id, err := strconv.ParseInt(to.PlatformID, 10, 64); err == nil {
		return id, nil
	}
	if strings.HasPrefix(to.PlatformID, "@") {
		return to.PlatformID, nil
	}
	return nil, fmt.Errorf("%q is not a telegram chat id", to.PlatformID)
}

// SendPart makes exactly one Bot API call for a part planned by Plan.
func (c *Connector) SendPart(ctx context.Context, to connectors.Address, part connectors.Part) (connectors.SentPart, error) {
	p, ok := part.(outPart)
	if !ok {
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("part of type %T was not planned by the telegram connector", part))
	}
	chat, err := chatID(to)
	if err != nil {
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrUnknownConversation, "", err)
	}
	var markup models.ReplyMarkup
	if len(p.Choices) > 0 {
		markup = keyboard(p.Choices)
	}
	var quote *models.ReplyParameters
	if p.ReplyTo > 0 {
		quote = &models.ReplyParameters{MessageID: p.ReplyTo, AllowSendingWithoutReply: true}
	}
	var parseMode models.ParseMode
	if p.Text != "" {
		parseMode = models.ParseModeHTML
	}

	method := p.Method
	var file models.InputFile = &models.InputFileString{Data: p.FileURL}
	var upload *storedUpload
	if method == methodSendStored {
		if upload, err = c.openStored(ctx, p); err != nil {
			return connectors.SentPart{}, err
		}
		defer upload.Close()
		method, file = upload.method, upload.file
	}

	var msg *models.Message
	switch method {
	case methodSendMessage:
		msg, err = c.api.SendMessage(ctx, &bot.SendMessageParams{
			ChatID: chat, MessageThreadID: p.ThreadID, Text: p.Text, ParseMode: models.ParseModeHTML,
			ReplyParameters: quote, ReplyMarkup: markup,
		})
	case methodSendPhoto:
		msg, err = c.api.SendPhoto(ctx, &bot.SendPhotoParams{
			ChatID: chat, MessageThreadID: p.ThreadID, Photo: file,
			Caption: p.Text, ParseMode: parseMode, ReplyParameters: quote, ReplyMarkup: markup,
		})
	case methodSendDocument:
		msg, err = c.api.SendDocument(ctx, &bot.SendDocumentParams{
			ChatID: chat, MessageThreadID: p.ThreadID, Document: file,
			Caption: p.Text, ParseMode: parseMode, ReplyParameters: quote, ReplyMarkup: markup,
		})
	default:
		return connectors.SentPart{}, connectors.Permanent(normalize.ErrInvalidReply, "", fmt.Errorf("unknown telegram method %q", p.Method))
	}
	if err != nil {
		err = fmt.Errorf("telegram %s to chat %s: %w", method, to.PlatformID, err)
		if upload != nil && upload.body.exceeded() {
			// The store's size was wrong or unknown; Telegram would refuse it.
			return connectors.SentPart{}, connectors.Permanent(normalize.ErrTooLarge, "", err)
		}
		return connectors.SentPart{}, c.classifySend(err)
	}
	if msg == nil || msg.ID == 0 {
		// Sent, but the answer named no message; retrying would send twice.
		c.log.Warn("telegram answered a send without a message id", "method", method)
		return connectors.SentPart{}, nil
	}
	return connectors.SentPart{PlatformID: strconv.Itoa(msg.ID)}, nil
}

// storedUpload is stored media opened for one upload.
type storedUpload struct {
	method string // methodSendPhoto or methodSendDocument
	file   *models.InputFileUpload
	body   *cappedReader
}

// Close releases the stored media; it waits for a read in progress.
func (u *storedUpload) Close() error { return u.body.Close() }

// openStored opens the stored media of a methodSendStored part and picks
// how to upload it:
//
//   - JPEG, PNG, GIF and WebP up to 10 MB go with sendPhoto; a bigger
//     picture goes with sendDocument, byte for byte, rather than fail;
//   - anything else goes with sendDocument, up to 50 MB;
//   - over 50 MB fails permanently with too_large.
//
// Media not stored in the connector's region (never received, or past the
// object store's retention) fails permanently with invalid_reply: the
// reply names a file Parley cannot send, and retrying cannot change that.
// Other storage trouble is transient. The file is named after the reply's
// filename, else the stored file name, else the media id with an extension
// for its content type.
func (c *Connector) openStored(ctx context.Context, p outPart) (*storedUpload, error) {
	if c.deps.Media == nil {
		return nil, connectors.Permanent(normalize.ErrUnsupported, "", errors.New("this connector was given no media store"))
	}
	rc, info, err := c.deps.Media.OpenMedia(ctx, p.MediaID)
	if errors.Is(err, connectors.ErrNotFound) {
		return nil, connectors.Permanent(normalize.ErrInvalidReply, "",
			fmt.Errorf("media %s is not stored in region %s (never received here, or expired): %w", p.MediaID, c.deps.Region, err))
	}
	if err != nil {
		return nil, connectors.Transient("", fmt.Errorf("opening stored media %s: %w", p.MediaID, err))
	}
	contentType, _, _ := mime.ParseMediaType(info.MimeType)
	method, limit := methodSendDocument, int64(maxDocumentUpload)
	if photoTypes[contentType] && info.Size >= 0 && info.Size <= maxPhotoUpload {
		method, limit = methodSendPhoto, maxPhotoUpload
	}
	if info.Size > limit {
		rc.Close()
		return nil, connectors.Permanent(normalize.ErrTooLarge, "",
			fmt.Errorf("media %s is %d bytes; telegram accepts uploads of at most %d", p.MediaID, info.Size, limit))
	}
	name := firstNonEmpty(p.Filename, info.Filename, string(p.MediaID)+extensionFor(contentType))
	body := &cappedReader{r: rc, limit: limit}
	c.log.Debug("uploading stored media", "media_id", p.MediaID, "method", method, "size", info.Size)
	return &storedUpload{method: method, file: &models.InputFileUpload{Filename: name, Data: body}, body: body}, nil
}

// knownExtensions name files of common types; mime.ExtensionsByType may
// offer several, in no useful order.
var knownExtensions = map[string]string{
	"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp",
	"application/pdf": ".pdf", "video/mp4": ".mp4", "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "text/plain": ".txt",
}

// extensionFor returns a file extension for a content type, "" when none
// is known.
func extensionFor(contentType string) string {
	if ext, ok := knownExtensions[contentType]; ok {
		return ext
	}
	if exts, err := mime.ExtensionsByType(contentType); err == nil && len(exts) > 0 {
		return exts[0]
	}
	return ""
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

// cappedReader streams stored media into an upload and stops with an
// error past limit bytes, so a size the store got wrong cannot send more
// than Telegram accepts. The SDK reads it from a goroutine of its own that
// may outlive a failed call, so Close waits for a read in progress and
// later reads fail.
type cappedReader struct {
	mu     sync.Mutex
	r      io.ReadCloser
	limit  int64
	n      int64
	over   bool
	closed bool
}

var errUploadTooLarge = errors.New("stored media is larger than telegram accepts")

func (c *cappedReader) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, io.ErrClosedPipe
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		c.over = true
		return 0, errUploadTooLarge
	}
	return n, err
}

func (c *cappedReader) exceeded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.over
}

func (c *cappedReader) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.r.Close()
}
