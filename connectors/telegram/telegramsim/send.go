package telegramsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-telegram/bot/models"
)

// SentMessage is one successful send, as the simulator received it.
type SentMessage struct {
	Method      string // "sendMessage", "sendPhoto" or "sendDocument"
	ChatID      int64
	MessageID   int
	Text        string          // text parameter as sent, markup included
	ParseMode   string          // as sent
	Caption     string          // caption parameter as sent, markup included
	Media       string          // photo/document parameter: a file_id, a URL, or the uploaded file's name
	MediaFileID string          // file_id of the media in the answer (new for URLs and uploads)
	ReplyMarkup json.RawMessage // as sent, nil when absent
	ReplyTo     int             // reply_parameters.message_id (or reply_to_message_id), 0 when absent
	ThreadID    int             // message_thread_id
	Time        time.Time
	Message     *models.Message // the message the simulator answered with
}

// CallbackAnswer is one successful answerCallbackQuery.
type CallbackAnswer struct {
	QueryID   string
	Text      string
	ShowAlert bool
	URL       string
	CacheTime int
	Time      time.Time
}

// ChatAction is one successful sendChatAction.
type ChatAction struct {
	ChatID int64
	Action string
	Time   time.Time
}

// mediaRef is the photo or document of a send.
type mediaRef struct {
	field    string // "photo" or "document"
	value    string // as sent
	fileID   string // an existing file
	url      string
	upload   *upload
	filename string
}

// outgoing is a validated send request.
type outgoing struct {
	method       string
	chatID       int64
	threadID     int
	replyTo      int
	allowNoReply bool
	markupRaw    json.RawMessage
	inline       *models.InlineKeyboardMarkup
	text         string
	parseMode    string
	caption      string
	media        *mediaRef
}

func (s *Sim) outgoingParams(p *params, method string) (*outgoing, *apiError) {
	o := &outgoing{method: method, parseMode: p.str("parse_mode")}
	id, aerr := chatIDParam(p)
	if aerr != nil {
		return nil, aerr
	}
	o.chatID = id
	if o.threadID, _, aerr = p.int("message_thread_id"); aerr != nil {
		return nil, aerr
	}
	var rp struct {
		MessageID                int  `json:"message_id"`
		AllowSendingWithoutReply bool `json:"allow_sending_without_reply"`
	}
	if ok, err := p.json("reply_parameters", &rp); err != nil {
		return nil, badRequest("Bad Request: can't parse reply parameters JSON object")
	} else if ok {
		o.replyTo, o.allowNoReply = rp.MessageID, rp.AllowSendingWithoutReply
	} else {
		if o.replyTo, _, aerr = p.int("reply_to_message_id"); aerr != nil {
			return nil, aerr
		}
		o.allowNoReply = p.bool("allow_sending_without_reply")
	}
	if raw := strings.TrimSpace(p.str("reply_markup")); raw != "" {
		inline, aerr := checkReplyMarkup(raw)
		if aerr != nil {
			return nil, aerr
		}
		o.markupRaw, o.inline = json.RawMessage(raw), inline
	}
	return o, nil
}

// chatIDParam reads chat_id. Only numeric ids are known to the simulator: "@channelusername" gets
// "chat not found".
func chatIDParam(p *params) (int64, *apiError) {
	v := strings.TrimSpace(p.str("chat_id"))
	if v == "" {
		return 0, badRequest("Bad Request: chat_id is empty")
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id == 0 {
		return 0, badRequest(DescChatNotFound)
	}
	return id, nil
}

// checkReplyMarkup validates reply_markup and returns it when it is an inline keyboard, which sent
// messages echo.
func checkReplyMarkup(raw string) (*models.InlineKeyboardMarkup, *apiError) {
	errMarkup := badRequest("Bad Request: can't parse reply keyboard markup JSON object")
	var obj map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &obj); err != nil {
		return nil, errMarkup
	}
	ik, ok := obj["inline_keyboard"]
	if !ok {
		for _, k := range []string{"keyboard", "remove_keyboard", "force_reply"} {
			if _, ok := obj[k]; ok {
				return nil, nil
			}
		}
		return nil, errMarkup
	}
	var rows [][]map[string]json.RawMessage
	if err := json.Unmarshal(ik, &rows); err != nil {
		return nil, errMarkup
	}
	for _, row := range rows {
		for _, b := range row {
			var text string
			if err := json.Unmarshal(b["text"], &text); err != nil || text == "" {
				return nil, badRequest("Bad Request: can't parse inline keyboard button: Text must be non-empty")
			}
			if raw, ok := b["callback_data"]; ok {
				var data string
				if err := json.Unmarshal(raw, &data); err != nil || data == "" || len(data) > 64 {
					return nil, badRequest("Bad Request: BUTTON_DATA_INVALID")
				}
			}
			if !buttonHasAction(b) {
				return nil, badRequest("Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
			}
		}
	}
	var kb models.InlineKeyboardMarkup
	if err := json.Unmarshal([]byte(raw), &kb); err != nil {
		return nil, errMarkup
	}
	return &kb, nil
}

func buttonHasAction(b map[string]json.RawMessage) bool {
	for _, k := range []string{"url", "callback_data", "web_app", "login_url", "switch_inline_query",
		"switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "callback_game", "pay"} {
		if _, ok := b[k]; ok {
			return true
		}
	}
	// go-telegram/bot always sends "copy_text":{"text":""}; only a non-empty one is an action.
	var ct struct {
		Text string `json:"text"`
	}
	return json.Unmarshal(b["copy_text"], &ct) == nil && ct.Text != ""
}

// formatText parses text under parse_mode and checks its length after parsing.
func formatText(text, parseMode string, limit int, tooLong string) (string, []models.MessageEntity, *apiError) {
	if !utf8.ValidString(text) {
		return "", nil, badRequest("Bad Request: strings must be encoded in UTF-8")
	}
	plain, entities, err := parseFormatted(text, parseMode)
	if errors.Is(err, errUnsupportedParseMode) {
		return "", nil, badRequest("Bad Request: unsupported parse_mode")
	}
	if err != nil {
		return "", nil, badRequest(DescCantParseEntities + err.Error())
	}
	if utf16Len(plain) > limit {
		return "", nil, badRequest(tooLong)
	}
	return plain, entities, nil
}

func (s *Sim) sendMessage(_ context.Context, p *params) (any, *apiError) {
	o, aerr := s.outgoingParams(p, "sendMessage")
	if aerr != nil {
		return nil, aerr
	}
	o.text = p.str("text")
	plain, entities, aerr := formatText(o.text, o.parseMode, MaxTextLength, DescMessageTooLong)
	if aerr != nil {
		return nil, aerr
	}
	if strings.TrimSpace(plain) == "" {
		return nil, badRequest(DescTextEmpty)
	}
	if o.parseMode == "" {
		if _, err := p.json("entities", &entities); err != nil {
			return nil, badRequest("Bad Request: can't parse entities JSON object")
		}
	}
	return s.commitSend(o, models.Message{Text: plain, Entities: entities})
}

func (s *Sim) sendPhoto(_ context.Context, p *params) (any, *apiError) {
	return s.sendMedia(p, "sendPhoto", "photo")
}

func (s *Sim) sendDocument(_ context.Context, p *params) (any, *apiError) {
	return s.sendMedia(p, "sendDocument", "document")
}

func (s *Sim) sendMedia(p *params, method, field string) (any, *apiError) {
	o, aerr := s.outgoingParams(p, method)
	if aerr != nil {
		return nil, aerr
	}
	if o.media, aerr = mediaParam(p, field); aerr != nil {
		return nil, aerr
	}
	o.caption = p.str("caption")
	plain, entities, aerr := formatText(o.caption, o.parseMode, MaxCaptionLength, DescCaptionTooLong)
	if aerr != nil {
		return nil, aerr
	}
	if o.parseMode == "" {
		if _, err := p.json("caption_entities", &entities); err != nil {
			return nil, badRequest("Bad Request: can't parse entities JSON object")
		}
	}
	return s.commitSend(o, models.Message{Caption: plain, CaptionEntities: entities})
}

// mediaParam reads a photo or document given as an upload, "attach://<part>", a URL or a file_id.
// URLs are not fetched: the simulator accepts any http(s) URL.
func mediaParam(p *params, field string) (*mediaRef, *apiError) {
	m := &mediaRef{field: field}
	if up, ok := p.files[field]; ok {
		m.upload, m.value, m.filename = &up, up.filename, up.filename
		return m, nil
	}
	m.value = strings.TrimSpace(p.str(field))
	switch {
	case m.value == "":
		return nil, badRequest("Bad Request: there is no " + field + " in the request")
	case strings.HasPrefix(m.value, "attach://"):
		up, ok := p.files[strings.TrimPrefix(m.value, "attach://")]
		if !ok {
			return nil, badRequest(DescWrongFile)
		}
		m.upload, m.filename = &up, up.filename
	case strings.HasPrefix(m.value, "http://") || strings.HasPrefix(m.value, "https://"):
		u, err := url.Parse(m.value)
		if err != nil || u.Host == "" {
			return nil, badRequest(DescWrongFile)
		}
		m.url, m.filename = m.value, path.Base(u.Path)
		if m.filename == "/" || m.filename == "." {
			m.filename = ""
		}
	default:
		m.fileID = m.value
	}
	return m, nil
}

// commitSend applies the chat's state, the reply target and the rate limits, then assigns the message
// id, records the send and returns the message.
func (s *Sim) commitSend(o *outgoing, msg models.Message) (any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chatLocked(o.chatID)
	if aerr := c.unreachable(); aerr != nil {
		return nil, aerr
	}
	if o.media != nil && o.media.fileID != "" {
		if _, ok := s.files[o.media.fileID]; !ok {
			return nil, badRequest(DescWrongFile)
		}
	}
	var replyTo *models.Message
	if o.replyTo != 0 {
		if m, ok := c.messages[o.replyTo]; ok {
			cp := *m
			replyTo = &cp
		} else if !o.allowNoReply {
			return nil, badRequest(DescReplyNotFound)
		}
	}
	now := s.now()
	if aerr := s.rateLimitLocked(c, o.chatID, now); aerr != nil {
		return nil, aerr
	}

	c.lastMessageID++
	bot := s.bot
	msg.ID = c.lastMessageID
	msg.From = &bot
	msg.Chat = chatModel(c, o.chatID, nil)
	msg.Date = int(now.Unix())
	msg.MessageThreadID = o.threadID
	msg.IsTopicMessage = o.threadID != 0 && msg.Chat.Type == models.ChatTypeSupergroup
	msg.ReplyToMessage = replyTo
	msg.ReplyMarkup = o.inline
	var mediaFileID string
	if o.media != nil {
		mediaFileID = s.attachMediaLocked(o.media, &msg)
	}
	s.rememberLocked(&msg)

	answer := msg
	s.sent = append(s.sent, SentMessage{
		Method: o.method, ChatID: o.chatID, MessageID: msg.ID, Text: o.text, ParseMode: o.parseMode,
		Caption: o.caption, Media: mediaValue(o.media), MediaFileID: mediaFileID, ReplyMarkup: o.markupRaw,
		ReplyTo: o.replyTo, ThreadID: o.threadID, Time: now, Message: &answer,
	})
	close(s.sentCh)
	s.sentCh = make(chan struct{})
	return &msg, nil
}

func mediaValue(m *mediaRef) string {
	if m == nil {
		return ""
	}
	return m.value
}

// attachMediaLocked registers the media of a send as a file and describes it in msg.
func (s *Sim) attachMediaLocked(m *mediaRef, msg *models.Message) string {
	var f *fileEntry
	switch {
	case m.fileID != "":
		f = s.files[m.fileID]
	case m.upload != nil:
		f = s.newFileLocked(m.field, m.field+"s", m.filename, m.upload.data)
	default:
		f = s.newFileLocked(m.field, m.field+"s", m.filename, nil)
	}
	switch m.field {
	case "photo":
		msg.Photo = []models.PhotoSize{{FileID: f.id, FileUniqueID: f.uniqueID, Width: 1280, Height: 960, FileSize: int(f.size)}}
	default:
		name := f.name
		if name == "" {
			name = m.filename
		}
		msg.Document = &models.Document{
			FileID: f.id, FileUniqueID: f.uniqueID, FileName: name,
			MimeType: mime.TypeByExtension(path.Ext(name)), FileSize: f.size,
		}
	}
	return f.id
}

var chatActions = []string{
	"typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
	"upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
}

func (s *Sim) sendChatAction(_ context.Context, p *params) (any, *apiError) {
	id, aerr := chatIDParam(p)
	if aerr != nil {
		return nil, aerr
	}
	action := p.str("action")
	if !slices.Contains(chatActions, action) {
		return nil, badRequest("Bad Request: wrong parameter action in request")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if aerr := s.chatLocked(id).unreachable(); aerr != nil {
		return nil, aerr
	}
	s.actions = append(s.actions, ChatAction{ChatID: id, Action: action, Time: s.now()})
	return true, nil
}

func (s *Sim) answerCallbackQuery(_ context.Context, p *params) (any, *apiError) {
	id := p.str("callback_query_id")
	cacheTime, _, aerr := p.int("cache_time")
	if aerr != nil {
		return nil, aerr
	}
	if utf16Len(p.str("text")) > 200 {
		return nil, badRequest("Bad Request: MESSAGE_TOO_LONG")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.callbacks[id] {
		return nil, badRequest(DescQueryTooOld)
	}
	delete(s.callbacks, id)
	s.answers = append(s.answers, CallbackAnswer{
		QueryID: id, Text: p.str("text"), ShowAlert: p.bool("show_alert"), URL: p.str("url"),
		CacheTime: cacheTime, Time: s.now(),
	})
	return true, nil
}

// --- records ----------------------------------------------------------------------------------------

// Sent returns every successful send so far, oldest first.
func (s *Sim) Sent() []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// SentTo returns the successful sends to chatID, oldest first.
func (s *Sim) SentTo(chatID int64) []SentMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sentTo(s.sent, chatID)
}

func sentTo(all []SentMessage, chatID int64) []SentMessage {
	var out []SentMessage
	for _, m := range all {
		if m.ChatID == chatID {
			out = append(out, m)
		}
	}
	return out
}

// WaitSent blocks until at least n sends were recorded and returns them all, or returns those so far
// and an error when ctx ends first.
func (s *Sim) WaitSent(ctx context.Context, n int) ([]SentMessage, error) {
	return s.waitSent(ctx, n, func(all []SentMessage) []SentMessage { return slices.Clone(all) })
}

// WaitSentTo is WaitSent for the sends to one chat.
func (s *Sim) WaitSentTo(ctx context.Context, chatID int64, n int) ([]SentMessage, error) {
	return s.waitSent(ctx, n, func(all []SentMessage) []SentMessage { return sentTo(all, chatID) })
}

func (s *Sim) waitSent(ctx context.Context, n int, sel func([]SentMessage) []SentMessage) ([]SentMessage, error) {
	for {
		s.mu.Lock()
		got, ch := sel(s.sent), s.sentCh
		s.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return got, fmt.Errorf("waiting for %d sent messages, got %d: %w", n, len(got), ctx.Err())
		}
	}
}

// CallbackAnswers returns the successful answerCallbackQuery calls, oldest first.
func (s *Sim) CallbackAnswers() []CallbackAnswer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.answers)
}

// ChatActions returns the successful sendChatAction calls, oldest first.
func (s *Sim) ChatActions() []ChatAction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.actions)
}
