package telegramsim

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/go-telegram/bot/models"
)

// The builders return updates as a user's client would cause them; pass them to Enqueue. They take
// message ids from the chat's sequence (shared with the bot's sends, as in Telegram), register the
// files they mention for getFile, and describe the chat as private for a positive chatID and as a
// group or supergroup for a negative one.

// newMessageLocked starts a message from from in chatID.
func (s *Sim) newMessageLocked(chatID int64, from models.User) *models.Message {
	c := s.chatLocked(chatID)
	c.lastMessageID++
	return &models.Message{
		ID:   c.lastMessageID,
		From: &from,
		Chat: chatModel(c, chatID, &from),
		Date: int(s.now().Unix()),
	}
}

// UserText is a text message from from in chatID. A leading "/command" gets a bot_command entity.
func (s *Sim) UserText(chatID int64, from models.User, text string) models.Update {
	s.mu.Lock()
	m := s.newMessageLocked(chatID, from)
	s.mu.Unlock()
	m.Text = text
	if strings.HasPrefix(text, "/") {
		cmd, _, _ := strings.Cut(text, " ")
		m.Entities = []models.MessageEntity{{Type: models.MessageEntityTypeBotCommand, Offset: 0, Length: utf16Len(cmd)}}
	}
	return models.Update{Message: m}
}

// photoSizes are the sizes Telegram generates for a photo, smallest first.
var photoSizes = []struct{ w, h int }{{90, 68}, {320, 240}, {1280, 960}}

// Photo is a photo message with caption. It carries three PhotoSize entries, smallest first; each is
// a registered file whose content is a prefix of data proportional to its width, the largest being
// data itself.
func (s *Sim) Photo(chatID int64, from models.User, caption string, data []byte) models.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.newMessageLocked(chatID, from)
	m.Caption = caption
	for i, size := range photoSizes {
		part := data
		if i < len(photoSizes)-1 {
			part = data[:len(data)*size.w/photoSizes[len(photoSizes)-1].w]
		}
		f := s.newFileLocked("photo", "photos", fmt.Sprintf("photo_%d.jpg", i), part)
		m.Photo = append(m.Photo, models.PhotoSize{
			FileID: f.id, FileUniqueID: f.uniqueID, Width: size.w, Height: size.h, FileSize: int(f.size),
		})
	}
	return models.Update{Message: m}
}

// Document is a file message; the file is registered under Message.Document.FileID. To model a file
// too big to download, re-register that id with AddFile and a size above MaxDownloadSize.
func (s *Sim) Document(chatID int64, from models.User, fileName, mimeType string, data []byte) models.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.newMessageLocked(chatID, from)
	f := s.newFileLocked("document", "documents", fileName, data)
	m.Document = &models.Document{
		FileID: f.id, FileUniqueID: f.uniqueID, FileName: fileName, MimeType: mimeType, FileSize: f.size,
	}
	return models.Update{Message: m}
}

// Location is a location message.
func (s *Sim) Location(chatID int64, from models.User, latitude, longitude float64) models.Update {
	s.mu.Lock()
	m := s.newMessageLocked(chatID, from)
	s.mu.Unlock()
	m.Location = &models.Location{Latitude: latitude, Longitude: longitude}
	return models.Update{Message: m}
}

// EditedText is an edited_message: message messageID of chatID now reads text. Date is the
// original's when the simulator knows it; EditDate is now.
func (s *Sim) EditedText(chatID int64, from models.User, messageID int, text string) models.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chatLocked(chatID)
	now := int(s.now().Unix())
	m := &models.Message{ID: messageID, From: &from, Chat: chatModel(c, chatID, &from), Date: now, EditDate: now, Text: text}
	if old, ok := c.messages[messageID]; ok {
		m.Date = old.Date
	}
	return models.Update{EditedMessage: m}
}

// CallbackQuery is a press on an inline button with callback data on message messageID of chatID
// (normally a message the bot sent). The message is included in full when the simulator knows it and
// as an inaccessible message otherwise. answerCallbackQuery accepts the query's id once.
func (s *Sim) CallbackQuery(chatID int64, from models.User, messageID int, data string) models.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chatLocked(chatID)
	s.nextCallback++
	q := &models.CallbackQuery{
		ID:           fmt.Sprintf("%d%08d", s.botID, s.nextCallback),
		From:         from,
		ChatInstance: chatInstance(s.botID, chatID),
		Data:         data,
	}
	if old, ok := c.messages[messageID]; ok {
		cp := *old
		q.Message = models.MaybeInaccessibleMessage{Type: models.MaybeInaccessibleMessageTypeMessage, Message: &cp}
	} else {
		q.Message = models.MaybeInaccessibleMessage{
			Type:                models.MaybeInaccessibleMessageTypeInaccessibleMessage,
			InaccessibleMessage: &models.InaccessibleMessage{Chat: chatModel(c, chatID, &from), MessageID: messageID},
		}
	}
	return models.Update{CallbackQuery: q}
}

func chatInstance(botID, chatID int64) string {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "%d:%d", botID, chatID)
	return fmt.Sprintf("%d", h.Sum64()>>1)
}

// Reaction is a message_reaction: from now reacts to messageID with the given emoji (none: the
// reaction was removed). Telegram sends these only when allowed_updates lists "message_reaction",
// and the simulator follows suit.
func (s *Sim) Reaction(chatID int64, from models.User, messageID int, emoji ...string) models.Update {
	s.mu.Lock()
	c := s.chatLocked(chatID)
	r := &models.MessageReactionUpdated{
		Chat:        chatModel(c, chatID, &from),
		MessageID:   messageID,
		User:        &from,
		Date:        int(s.now().Unix()),
		OldReaction: []models.ReactionType{},
		NewReaction: []models.ReactionType{},
	}
	s.mu.Unlock()
	for _, e := range emoji {
		r.NewReaction = append(r.NewReaction, models.ReactionType{
			Type:              models.ReactionTypeTypeEmoji,
			ReactionTypeEmoji: &models.ReactionTypeEmoji{Type: models.ReactionTypeTypeEmoji, Emoji: e},
		})
	}
	return models.Update{MessageReaction: r}
}
