package telegram

// Inbound mapping: one Telegram Update → what it means for Parley. Everything
// here is pure (no I/O, no clock, no logging) so the webhook handler and the
// poll loop share it, golden files pin it and the fuzzer can hammer it.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/normalize"
)

// inPlatform is the platform name in ids, sources and data.
const inPlatform = "telegram"

// inMaxDownload is the largest file the cloud Bot API lets a bot download
// (getFile refuses bigger ones), so bigger attachments are unavailable from
// the start instead of failing later in the media job.
const inMaxDownload = 20 * 1024 * 1024

// inTooBigReason is the UnavailableReason of attachments over inMaxDownload.
const inTooBigReason = "telegram bots cannot download files over 20 MB"

// inMaxUnix is 9999-12-31T23:59:59Z: later times cannot be written as RFC
// 3339, so an event carrying one could never be encoded.
const inMaxUnix = 253402300799

// inboundContext carries what the pure mapping needs beyond the update.
type inboundContext struct {
	Region, Connector string
	BotID             string // the bot's numeric id (from the token prefix): the platform account
	ReceivedAt        time.Time
}

// inboundResult is everything one update means for Parley.
type inboundResult struct {
	Events []*normalize.Event
	// CallbackQueryID, when non-empty, must be answered with
	// answerCallbackQuery after the events are stored, or the user's client
	// keeps spinning.
	CallbackQueryID string
	// Reachability is set for my_chat_member updates: the bot was blocked
	// or unblocked, removed from or added to a chat.
	Reachability *reachability
	// Ignored names an update Parley deliberately does not map (e.g.
	// "poll_answer"); the caller counts it, logs it at Debug and acks it.
	Ignored string
}

// reachability says whether replies can reach a conversation any more.
type reachability struct {
	Conversation normalize.ConversationID
	Reachable    bool
	Reason       string
}

// inWire decodes an update while telling a missing update_id from a zero
// one: the outer UpdateID shadows the embedded models.Update.ID.
type inWire struct {
	models.Update
	UpdateID *int64 `json:"update_id"`
}

// parseUpdate decodes one Update as Telegram sends it to a webhook or in a
// getUpdates result. Anything that is not a JSON object with an update_id
// is an error (the webhook answers 400). Unknown fields are ignored: Telegram
// adds fields with every Bot API release.
func parseUpdate(raw []byte) (*models.Update, error) {
	var w inWire
	if err := json.Unmarshal(raw, &w); err != nil {
		// Only now decode the id alone (one pass on the common path): a
		// well-formed update whose content this SDK version cannot decode
		// (a reaction or member type newer than the SDK) must not be
		// refused, or Telegram redelivers it for ever and holds back the
		// updates queued behind it.
		var id struct {
			UpdateID *int64 `json:"update_id"`
		}
		if idErr := json.Unmarshal(raw, &id); idErr != nil {
			return nil, fmt.Errorf("decoding telegram update: %w", idErr)
		}
		if id.UpdateID == nil {
			return nil, errors.New("decoding telegram update: update_id missing")
		}
		return &models.Update{ID: *id.UpdateID}, fmt.Errorf("%w %d: %w", errUnreadableUpdate, *id.UpdateID, err)
	}
	if w.UpdateID == nil {
		return nil, errors.New("decoding telegram update: update_id missing")
	}
	u := w.Update
	u.ID = *w.UpdateID
	return &u, nil
}

// errUnreadableUpdate marks an update that is a well-formed JSON object
// with an update_id but whose content cannot be decoded.
var errUnreadableUpdate = errors.New("unreadable telegram update")

// mapUpdate maps one update to canonical events. It does no I/O and never
// panics; it fails only for an update that is structurally invalid (a
// message without a chat, a date that is not a time), never for a kind it
// does not know: those are Ignored. Every returned event passes Validate.
func mapUpdate(ic inboundContext, u *models.Update) (inboundResult, error) {
	if u == nil {
		return inboundResult{}, errors.New("mapping telegram update: no update")
	}
	res, err := ic.inMap(u)
	if err != nil {
		return inboundResult{}, fmt.Errorf("mapping telegram update %d: %w", u.ID, err)
	}
	for _, e := range res.Events {
		if err := e.Validate(); err != nil {
			return inboundResult{}, fmt.Errorf("mapping telegram update %d: %w", u.ID, err)
		}
	}
	return res, nil
}

// inMap dispatches on the one field an update carries.
func (ic inboundContext) inMap(u *models.Update) (inboundResult, error) {
	switch {
	case u.Message != nil:
		return ic.inMessage(u.Message, false)
	case u.EditedMessage != nil:
		return ic.inMessage(u.EditedMessage, true)
	case u.ChannelPost != nil:
		return ic.inMessage(u.ChannelPost, false)
	case u.EditedChannelPost != nil:
		return ic.inMessage(u.EditedChannelPost, true)
	case u.BusinessMessage != nil:
		return ic.inMessage(u.BusinessMessage, false)
	case u.EditedBusinessMessage != nil:
		return ic.inMessage(u.EditedBusinessMessage, true)
	case u.DeletedBusinessMessages != nil:
		return ic.inDeleted(u.DeletedBusinessMessages)
	case u.CallbackQuery != nil:
		return ic.inCallback(u.CallbackQuery)
	case u.MessageReaction != nil:
		return ic.inReaction(u.MessageReaction)
	case u.MyChatMember != nil:
		return ic.inMyChatMember(u.MyChatMember)
	}
	return inboundResult{Ignored: inIgnoredKind(u)}, nil
}

// inIgnoredKind names the update kinds Parley receives but does not map.
func inIgnoredKind(u *models.Update) string {
	switch {
	case u.BusinessConnection != nil:
		return models.AllowedUpdateBusinessConnection
	case u.MessageReactionCount != nil:
		return models.AllowedUpdateMessageReactionCount
	case u.InlineQuery != nil:
		return models.AllowedUpdateInlineQuery
	case u.ChosenInlineResult != nil:
		return models.AllowedUpdateChosenInlineResult
	case u.ShippingQuery != nil:
		return models.AllowedUpdateShippingQuery
	case u.PreCheckoutQuery != nil:
		return models.AllowedUpdatePreCheckoutQuery
	case u.PurchasedPaidMedia != nil:
		return models.AllowedUpdatePurchasedPaidMedia
	case u.Poll != nil:
		return models.AllowedUpdatePoll
	case u.PollAnswer != nil:
		return models.AllowedUpdatePollAnswer
	case u.ChatMember != nil:
		return models.AllowedUpdateChatMember
	case u.ChatJoinRequest != nil:
		return models.AllowedUpdateChatJoinRequest
	case u.ChatBoost != nil:
		return models.AllowedUpdateChatBoost
	case u.RemovedChatBoost != nil:
		return models.AllowedUpdateRemovedChatBoost
	}
	// A kind newer than the models package: its fields were dropped while
	// decoding, so there is nothing to map.
	return "unknown update"
}

// inChat is one conversation as the mapping addresses it: the canonical
// conversation and the parts that scope platform message ids within it.
type inChat struct {
	conv *normalize.Conversation
	// key scopes message ids in event ids: the chat id, plus the business
	// connection for business chats, whose message ids are counted apart
	// from the bot's own chat with the same user.
	key []string
}

// inConversation builds the conversation of a chat. A forum topic
// (thread > 0) is a conversation of its own, so helpdesks see one ticket per
// topic. A business chat is separate from the bot's own chat with the same
// user (both have the user's id as chat id, but they are different chats with
// different people answering).
func (ic inboundContext) inConversation(chat models.Chat, thread int, business string) (inChat, error) {
	if chat.ID == 0 {
		return inChat{}, errors.New("chat missing")
	}
	chatID := strconv.FormatInt(chat.ID, 10)
	var extra []string
	conv := &normalize.Conversation{PlatformID: chatID, Kind: inKind(chat.Type), Title: chat.Title}
	key := []string{chatID}
	switch {
	case thread > 0:
		threadID := strconv.Itoa(thread)
		extra = append(extra, threadID)
		conv.Kind = normalize.KindThread
		conv.ThreadID = threadID
	case business != "":
		extra = append(extra, "business", business)
		key = append(key, "business", business)
	}
	if conv.Kind == normalize.KindDirect {
		// A private chat's title would be the other person's name, which
		// the sender already carries.
		conv.Title = ""
	}
	conv.ID = normalize.NewConversationID(inPlatform, ic.BotID, chatID, extra...)
	return inChat{conv: conv, key: key}, nil
}

// inKind maps a chat type. Telegram documents exactly four; an unknown one
// is treated as a group, the kind with the most cautious reply limits.
func inKind(t models.ChatType) normalize.ConversationKind {
	switch t {
	case models.ChatTypePrivate:
		return normalize.KindDirect
	case models.ChatTypeChannel:
		return normalize.KindChannel
	}
	return normalize.KindGroup
}

// inUserSender describes a Telegram user.
func (ic inboundContext) inUserSender(u *models.User) *normalize.Sender {
	if u == nil || u.ID == 0 {
		return nil
	}
	id := strconv.FormatInt(u.ID, 10)
	return &normalize.Sender{
		ID:         normalize.NewSenderID(inPlatform, ic.BotID, id),
		PlatformID: id,
		Name:       strings.TrimSpace(u.FirstName + " " + u.LastName),
		Username:   u.Username,
		Language:   u.LanguageCode,
	}
}

// inChatSender describes a chat acting as a sender: a channel posting, or a
// group's anonymous admin. Chat ids are negative and user ids positive, so
// the two never share a sender id.
func (ic inboundContext) inChatSender(c *models.Chat) *normalize.Sender {
	if c == nil || c.ID == 0 {
		return nil
	}
	id := strconv.FormatInt(c.ID, 10)
	name := c.Title
	if name == "" {
		name = strings.TrimSpace(c.FirstName + " " + c.LastName)
	}
	return &normalize.Sender{
		ID:         normalize.NewSenderID(inPlatform, ic.BotID, id),
		PlatformID: id,
		Name:       name,
		Username:   c.Username,
	}
}

// inEvent assembles an event with the fields every Telegram event shares.
func (ic inboundContext) inEvent(typ normalize.Type, ch inChat, sender *normalize.Sender, at time.Time, idParts ...string) *normalize.Event {
	return &normalize.Event{
		ID:      normalize.NewEventID(inPlatform, ic.BotID, idParts...),
		Source:  normalize.Source(ic.Region, inPlatform, ic.Connector),
		Type:    typ,
		Subject: ch.conv.ID,
		Time:    at,
		Data: normalize.Data{
			Region:       ic.Region,
			Platform:     inPlatform,
			Connector:    ic.Connector,
			Conversation: ch.conv,
			Sender:       sender,
			ReceivedAt:   ic.ReceivedAt,
			Account:      ic.BotID,
			// Telegram has no reply window: WindowExpiresAt stays nil.
		},
	}
}

// inTime converts a Telegram unix date. Zero, negative and far-future
// values are structural errors: Telegram dates every message.
func inTime(field string, sec int) (time.Time, error) {
	if sec <= 0 || sec > inMaxUnix {
		return time.Time{}, fmt.Errorf("%s %d out of range", field, sec)
	}
	return time.Unix(int64(sec), 0).UTC(), nil
}

// inMessage maps message, channel_post and business_message updates and
// their edited_* counterparts.
func (ic inboundContext) inMessage(m *models.Message, edited bool) (inboundResult, error) {
	if m.ID <= 0 {
		return inboundResult{}, fmt.Errorf("message_id %d invalid", m.ID)
	}
	// Telegram never delivers the bot's own messages, except the ones it
	// sent on behalf of a business account; keep our replies out either way.
	if m.From != nil && m.From.IsBot && strconv.FormatInt(m.From.ID, 10) == ic.BotID {
		return inboundResult{Ignored: "own message"}, nil
	}
	if m.SenderBusinessBot != nil && strconv.FormatInt(m.SenderBusinessBot.ID, 10) == ic.BotID {
		return inboundResult{Ignored: "own message"}, nil
	}
	if reason := inServiceReason(m); reason != "" {
		return inboundResult{Ignored: reason}, nil
	}
	thread := 0
	if m.IsTopicMessage {
		thread = m.MessageThreadID
	}
	ch, err := ic.inConversation(m.Chat, thread, m.BusinessConnectionID)
	if err != nil {
		return inboundResult{}, err
	}
	msg, err := ic.inContent(m)
	if err != nil {
		return inboundResult{}, err
	}
	if msg == nil {
		return inboundResult{Ignored: "unsupported message content" + inContentKind(m)}, nil
	}

	// sender_chat wins over from: for anonymous admins and channel posts
	// "from" is absent or a placeholder bot (GroupAnonymousBot).
	sender := ic.inChatSender(m.SenderChat)
	if sender == nil {
		sender = ic.inUserSender(m.From)
	}
	typ := normalize.TypeMessageReceived
	// In a business chat the customer's messages come from the chat's own
	// user; anything else was written by the business account, e.g. in the
	// Telegram app itself, which the contract calls an echo.
	business := m.BusinessConnectionID != "" && m.Chat.Type == models.ChatTypePrivate &&
		m.From != nil && m.From.ID != m.Chat.ID
	if business {
		if sender != nil {
			sender.IsBusiness = true
		}
		typ = normalize.TypeMessageEcho
	}

	sent, err := inTime("date", m.Date)
	if err != nil {
		return inboundResult{}, err
	}
	msgID := strconv.Itoa(m.ID)
	if !edited {
		parts := append(append([]string{"msg"}, ch.key...), msgID)
		e := ic.inEvent(typ, ch, sender, sent, parts...)
		e.Data.Message = msg
		return inboundResult{Events: []*normalize.Event{e}}, nil
	}

	// An edit is dated by edit_date; date stays the original send time.
	editSec := m.EditDate
	if editSec == 0 {
		editSec = m.Date
	}
	editAt, err := inTime("edit_date", editSec)
	if err != nil {
		return inboundResult{}, err
	}
	msg.EditedAt = &editAt
	parts := append(append([]string{"edit"}, ch.key...), msgID, strconv.Itoa(editSec))
	e := ic.inEvent(normalize.TypeMessageEdited, ch, sender, editAt, parts...)
	e.Data.Message = msg
	return inboundResult{Events: []*normalize.Event{e}}, nil
}

// inServiceReason names a service message (a member joined, a message was
// pinned, the group migrated...): these carry no content for a helpdesk.
// It returns "" for a message that may have content.
func inServiceReason(m *models.Message) string {
	var field string
	switch {
	case len(m.NewChatMembers) > 0:
		field = "new_chat_members"
	case m.LeftChatMember != nil:
		field = "left_chat_member"
	case m.NewChatTitle != "":
		field = "new_chat_title"
	case len(m.NewChatPhoto) > 0:
		field = "new_chat_photo"
	case m.DeleteChatPhoto:
		field = "delete_chat_photo"
	case m.GroupChatCreated, m.SupergroupChatCreated, m.ChannelChatCreated:
		field = "chat_created"
	case m.MessageAutoDeleteTimerChanged != nil:
		field = "message_auto_delete_timer_changed"
	case m.MigrateToChatID != 0:
		field = "migrate_to_chat_id"
	case m.MigrateFromChatID != 0:
		field = "migrate_from_chat_id"
	case m.PinnedMessage != nil:
		field = "pinned_message"
	case m.SuccessfulPayment != nil:
		field = "successful_payment"
	case m.RefundedPayment != nil:
		field = "refunded_payment"
	case m.UsersShared != nil:
		field = "users_shared"
	case m.ChatShared != nil:
		field = "chat_shared"
	case m.WriteAccessAllowed != nil:
		field = "write_access_allowed"
	case m.ForumTopicCreated != nil:
		field = "forum_topic_created"
	case m.ForumTopicEdited != nil:
		field = "forum_topic_edited"
	case m.ForumTopicClosed != nil:
		field = "forum_topic_closed"
	case m.ForumTopicReopened != nil:
		field = "forum_topic_reopened"
	case m.VoiceChatScheduled != nil, m.VoiceChatStarted != nil, m.VoiceChatEnded != nil, m.VoiceChatParticipantsInvited != nil:
		field = "video_chat"
	case m.ProximityAlertTriggered != nil:
		field = "proximity_alert_triggered"
	case m.BoostAdded != nil:
		field = "boost_added"
	case m.ChatBackgroundSet != nil:
		field = "chat_background_set"
	case m.WebAppData != nil:
		field = "web_app_data"
	case m.ChatOwnerLeft != nil, m.ChatOwnerChanged != nil:
		field = "chat_owner_changed"
	case m.Gift != nil, m.UniqueGift != nil, m.GiftUpgradeSent != nil:
		field = "gift"
	case m.ConnectedWebsite != "":
		field = "connected_website"
	default:
		return ""
	}
	return "service message: " + field
}

// inContentKind names, for the Ignored reason, content Parley has no
// canonical form for; "" when it is something else.
func inContentKind(m *models.Message) string {
	var kind string
	switch {
	case m.Poll != nil:
		kind = "poll"
	case m.Dice != nil:
		kind = "dice"
	case m.Game != nil:
		kind = "game"
	case m.Story != nil:
		kind = "story"
	case m.Checklist != nil:
		kind = "checklist"
	case m.Invoice != nil:
		kind = "invoice"
	case m.PaidMedia != nil:
		kind = "paid_media"
	case m.Giveaway != nil, m.GiveawayCreated != nil, m.GiveawayWinners != nil, m.GiveawayCompleted != nil:
		kind = "giveaway"
	case m.PassportData != nil:
		kind = "passport_data"
	default:
		return ""
	}
	return ": " + kind
}

// inContent maps what a person wrote or sent. It returns nil when the
// message has nothing Parley can represent (a poll, a dice, a game...).
func (ic inboundContext) inContent(m *models.Message) (*normalize.Message, error) {
	msg := &normalize.Message{PlatformID: strconv.Itoa(m.ID), Text: m.Text}
	if r := m.ReplyToMessage; r != nil && r.ID > 0 &&
		// In a forum every topic message "replies" to the topic's first
		// message unless the user quoted another one: that is the topic
		// itself, not a reply.
		!(m.IsTopicMessage && r.ID == m.MessageThreadID) {
		msg.ReplyTo = strconv.Itoa(r.ID)
	}

	att, err := ic.inAttachment(m)
	if err != nil {
		return nil, err
	}
	if att != nil {
		att.Caption = m.Caption
		msg.Attachments = []normalize.Attachment{*att}
		if msg.Text == "" {
			msg.Text = m.Caption
		}
	}

	switch {
	case m.Venue != nil:
		msg.Location = &normalize.Location{
			Latitude:  m.Venue.Location.Latitude,
			Longitude: m.Venue.Location.Longitude,
			AccuracyM: m.Venue.Location.HorizontalAccuracy,
			Name:      m.Venue.Title,
			Address:   m.Venue.Address,
		}
	case m.Location != nil:
		msg.Location = &normalize.Location{
			Latitude:  m.Location.Latitude,
			Longitude: m.Location.Longitude,
			AccuracyM: m.Location.HorizontalAccuracy,
		}
	}
	if c := m.Contact; c != nil {
		contact := normalize.Contact{
			Name:  strings.TrimSpace(c.FirstName + " " + c.LastName),
			Phone: c.PhoneNumber,
			VCard: c.VCard,
		}
		if c.UserID != 0 {
			contact.PlatformID = strconv.FormatInt(c.UserID, 10)
		}
		msg.Contacts = []normalize.Contact{contact}
	}

	if msg.Text == "" && len(msg.Attachments) == 0 && msg.Location == nil && len(msg.Contacts) == 0 {
		return nil, nil
	}
	return msg, nil
}

// inFile is what every Telegram file object shares.
type inFile struct {
	id, uniqueID string
	size         int64
}

// inAttachment maps the (at most one) file of a message. Telegram puts one
// media object on a message; an album arrives as several messages sharing
// media_group_id.
func (ic inboundContext) inAttachment(m *models.Message) (*normalize.Attachment, error) {
	var (
		a normalize.Attachment
		f inFile
	)
	switch {
	case len(m.Photo) > 0:
		// Telegram lists the sizes smallest first: keep the original.
		p := m.Photo[len(m.Photo)-1]
		a = normalize.Attachment{Kind: normalize.AttachImage, MimeType: "image/jpeg", Width: p.Width, Height: p.Height}
		f = inFile{p.FileID, p.FileUniqueID, int64(p.FileSize)}
	case m.Animation != nil:
		// An animation also comes with a document describing the same
		// file: map it once, as the video it is.
		v := m.Animation
		a = normalize.Attachment{Kind: normalize.AttachVideo, MimeType: inOr(v.MimeType, "video/mp4"), Filename: v.FileName,
			Width: v.Width, Height: v.Height, DurationMS: int64(v.Duration) * 1000}
		f = inFile{v.FileID, v.FileUniqueID, v.FileSize}
	case m.Video != nil:
		v := m.Video
		a = normalize.Attachment{Kind: normalize.AttachVideo, MimeType: inOr(v.MimeType, "video/mp4"), Filename: v.FileName,
			Width: v.Width, Height: v.Height, DurationMS: int64(v.Duration) * 1000}
		f = inFile{v.FileID, v.FileUniqueID, v.FileSize}
	case m.VideoNote != nil:
		v := m.VideoNote
		// Video notes are square MPEG-4 clips; Telegram gives only the side.
		a = normalize.Attachment{Kind: normalize.AttachVideo, MimeType: "video/mp4",
			Width: v.Length, Height: v.Length, DurationMS: int64(v.Duration) * 1000}
		f = inFile{v.FileID, v.FileUniqueID, int64(v.FileSize)}
	case m.Audio != nil:
		v := m.Audio
		a = normalize.Attachment{Kind: normalize.AttachAudio, MimeType: inOr(v.MimeType, "audio/mpeg"), Filename: v.FileName,
			DurationMS: int64(v.Duration) * 1000}
		f = inFile{v.FileID, v.FileUniqueID, v.FileSize}
	case m.Voice != nil:
		v := m.Voice
		a = normalize.Attachment{Kind: normalize.AttachVoice, MimeType: inOr(v.MimeType, "audio/ogg"),
			DurationMS: int64(v.Duration) * 1000}
		f = inFile{v.FileID, v.FileUniqueID, v.FileSize}
	case m.Sticker != nil:
		v := m.Sticker
		mime := "image/webp"
		switch {
		case v.IsAnimated:
			mime = "application/x-tgsticker"
		case v.IsVideo:
			mime = "video/webm"
		}
		a = normalize.Attachment{Kind: normalize.AttachSticker, MimeType: mime, Width: v.Width, Height: v.Height}
		f = inFile{v.FileID, v.FileUniqueID, int64(v.FileSize)}
	case m.Document != nil:
		v := m.Document
		a = normalize.Attachment{Kind: normalize.AttachFile, MimeType: inOr(v.MimeType, "application/octet-stream"), Filename: v.FileName}
		f = inFile{v.FileID, v.FileUniqueID, v.FileSize}
	default:
		return nil, nil
	}
	if f.id == "" {
		return nil, errors.New("attachment without file_id")
	}
	// file_unique_id is the same file for every bot and every resend, so
	// the stored bytes dedupe; file_id changes and is only the fetch handle.
	unique := inOr(f.uniqueID, f.id)
	a.MediaID = normalize.NewMediaID(inPlatform, ic.BotID, unique)
	a.Size = f.size
	a.FetchRef = f.id
	a.Status = normalize.MediaPending
	if f.size > inMaxDownload {
		a.Status = normalize.MediaUnavailable
		a.UnavailableReason = inTooBigReason
	}
	return &a, nil
}

func inOr(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

// inDeleted maps deleted_business_messages: one message.deleted per id.
// The update carries no date, so the events are dated when Parley received
// them.
func (ic inboundContext) inDeleted(d *models.BusinessMessagesDeleted) (inboundResult, error) {
	ch, err := ic.inConversation(d.Chat, 0, d.BusinessConnectionID)
	if err != nil {
		return inboundResult{}, err
	}
	var res inboundResult
	for _, id := range d.MessageIDs {
		if id <= 0 {
			return inboundResult{}, fmt.Errorf("deleted message_id %d invalid", id)
		}
		msgID := strconv.Itoa(id)
		parts := append(append([]string{"del"}, ch.key...), msgID)
		e := ic.inEvent(normalize.TypeMessageDeleted, ch, nil, ic.ReceivedAt, parts...)
		e.Data.Message = &normalize.Message{PlatformID: msgID}
		res.Events = append(res.Events, e)
	}
	if len(res.Events) == 0 {
		res.Ignored = "deleted_business_messages without message ids"
	}
	return res, nil
}

// inCallback maps a button press. Telegram gives callback queries no date,
// so the event is dated when Parley received it; its id comes from the
// query id alone, so a redelivery still deduplicates.
func (ic inboundContext) inCallback(q *models.CallbackQuery) (inboundResult, error) {
	if q.ID == "" {
		return inboundResult{}, errors.New("callback_query without id")
	}
	var (
		chat      models.Chat
		thread    int
		business  string
		messageID int
		title     string
	)
	switch {
	case q.Message.Message != nil:
		m := q.Message.Message
		chat, messageID, business = m.Chat, m.ID, m.BusinessConnectionID
		if m.IsTopicMessage {
			thread = m.MessageThreadID
		}
		title = inButtonTitle(m.ReplyMarkup, q.Data)
	case q.Message.InaccessibleMessage != nil:
		// Too old or deleted: the chat and message id survive, the
		// keyboard (and so the button's label) does not.
		chat, messageID = q.Message.InaccessibleMessage.Chat, q.Message.InaccessibleMessage.MessageID
	}
	if chat.ID == 0 {
		// A button under an inline-mode message belongs to no chat the bot
		// is in; the press is still the user's, in their private chat.
		chat = models.Chat{ID: q.From.ID, Type: models.ChatTypePrivate}
	}
	ch, err := ic.inConversation(chat, thread, business)
	if err != nil {
		return inboundResult{}, fmt.Errorf("callback_query without chat or sender: %w", err)
	}
	e := ic.inEvent(normalize.TypePostbackReceived, ch, ic.inUserSender(&q.From), ic.ReceivedAt, "cb", q.ID)
	e.Data.Message = &normalize.Message{
		Postback: &normalize.Postback{ID: q.Data, Title: title, Payload: q.Data},
	}
	if messageID > 0 {
		e.Data.Message.PlatformID = strconv.Itoa(messageID)
	}
	return inboundResult{Events: []*normalize.Event{e}, CallbackQueryID: q.ID}, nil
}

// inButtonTitle finds the label of the inline button that sent data.
func inButtonTitle(kb *models.InlineKeyboardMarkup, data string) string {
	if kb == nil || data == "" {
		return ""
	}
	for _, row := range kb.InlineKeyboard {
		for _, b := range row {
			if b.CallbackData == data {
				return b.Text
			}
		}
	}
	return ""
}

// inReaction maps a change of one person's reactions to one message into
// reaction.added / reaction.removed events, one per emoji. Telegram does not
// say which topic the message is in, so reactions in a forum land in the
// group's conversation.
func (ic inboundContext) inReaction(r *models.MessageReactionUpdated) (inboundResult, error) {
	if r.MessageID <= 0 {
		return inboundResult{}, fmt.Errorf("reaction message_id %d invalid", r.MessageID)
	}
	ch, err := ic.inConversation(r.Chat, 0, "")
	if err != nil {
		return inboundResult{}, err
	}
	at, err := inTime("date", r.Date)
	if err != nil {
		return inboundResult{}, err
	}
	sender := ic.inUserSender(r.User)
	if sender == nil {
		sender = ic.inChatSender(r.ActorChat)
	}
	actor := ""
	if sender != nil {
		actor = sender.PlatformID
	}
	oldSet, newSet := inEmojis(r.OldReaction), inEmojis(r.NewReaction)
	target := strconv.Itoa(r.MessageID)
	var res inboundResult
	add := func(typ normalize.Type, op, emoji string) {
		parts := append(append([]string{"react"}, ch.key...), target, actor, strconv.Itoa(r.Date), op, emoji)
		e := ic.inEvent(typ, ch, sender, at, parts...)
		e.Data.Reaction = &normalize.Reaction{TargetPlatformID: target, Emoji: emoji}
		res.Events = append(res.Events, e)
	}
	for _, emoji := range newSet {
		if !inContains(oldSet, emoji) {
			add(normalize.TypeReactionAdded, "added", emoji)
		}
	}
	for _, emoji := range oldSet {
		if !inContains(newSet, emoji) {
			add(normalize.TypeReactionRemoved, "removed", emoji)
		}
	}
	if len(res.Events) == 0 {
		res.Ignored = "message_reaction without change"
	}
	return res, nil
}

// inEmojis lists the distinct reactions in order. Custom emoji and paid
// (star) reactions get names of their own that no Unicode emoji can have.
func inEmojis(rs []models.ReactionType) []string {
	var out []string
	for _, r := range rs {
		var s string
		switch {
		case r.Type == models.ReactionTypeTypeEmoji && r.ReactionTypeEmoji != nil:
			s = r.ReactionTypeEmoji.Emoji
		case r.Type == models.ReactionTypeTypeCustomEmoji && r.ReactionTypeCustomEmoji != nil:
			s = "custom:" + r.ReactionTypeCustomEmoji.CustomEmojiID
		case r.Type == models.ReactionTypeTypePaid:
			s = "paid"
		}
		if s != "" && !inContains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func inContains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// inMyChatMember turns a change of the bot's own membership into a
// reachability change. It publishes no event: helpdesks learn of it when a
// reply fails with recipient_unavailable. In a forum this marks the group's
// conversation; its topics are conversations the update cannot name.
func (ic inboundContext) inMyChatMember(c *models.ChatMemberUpdated) (inboundResult, error) {
	ch, err := ic.inConversation(c.Chat, 0, "")
	if err != nil {
		return inboundResult{}, err
	}
	r := &reachability{Conversation: ch.conv.ID}
	status := c.NewChatMember.Type
	if c.Chat.Type == models.ChatTypePrivate {
		switch status {
		case models.ChatMemberTypeBanned, models.ChatMemberTypeLeft:
			r.Reason = "bot was blocked by the user"
		default:
			r.Reachable = true
			r.Reason = "bot was unblocked by the user"
		}
		return inboundResult{Reachability: r}, nil
	}
	place := "group"
	if c.Chat.Type == models.ChatTypeChannel {
		place = "channel"
	}
	switch status {
	case models.ChatMemberTypeBanned, models.ChatMemberTypeLeft:
		r.Reason = "bot was removed from the " + place
	case models.ChatMemberTypeRestricted:
		// A restricted bot may still be a member without the right to
		// write; only then can replies get through.
		rs := c.NewChatMember.Restricted
		r.Reachable = rs != nil && rs.IsMember && rs.CanSendMessages
		r.Reason = "bot was restricted in the " + place
	default:
		r.Reachable = true
		r.Reason = "bot was added to the " + place
	}
	return inboundResult{Reachability: r}, nil
}
