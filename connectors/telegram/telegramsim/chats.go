package telegramsim

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors/simkit"
)

// keptMessages is how many recent messages per chat the simulator remembers for replies and callback
// queries.
const keptMessages = 1024

// chatState is what the simulator knows about one chat.
type chatState struct {
	chat          models.Chat // zero Type until known from an update
	lastMessageID int         // message ids are shared by both directions, as in Telegram
	messages      map[int]*models.Message
	blocked       bool
	notFound      bool
	migrateTo     int64
	lastSend      time.Time
	group         window
}

func (s *Sim) chatLocked(id int64) *chatState {
	c, ok := s.chats[id]
	if !ok {
		c = &chatState{messages: map[int]*models.Message{}}
		s.chats[id] = c
	}
	return c
}

// chatModel returns the chat as the Bot API would describe it; from names a private chat not yet
// known from an update.
func chatModel(c *chatState, id int64, from *models.User) models.Chat {
	if c.chat.Type != "" {
		return c.chat
	}
	switch {
	case id > 0:
		ch := models.Chat{ID: id, Type: models.ChatTypePrivate}
		if from != nil {
			ch.FirstName, ch.LastName, ch.Username = from.FirstName, from.LastName, from.Username
		}
		return ch
	case id < -1_000_000_000_000:
		return models.Chat{ID: id, Type: models.ChatTypeSupergroup, Title: fmt.Sprintf("Chat %d", id)}
	}
	return models.Chat{ID: id, Type: models.ChatTypeGroup, Title: fmt.Sprintf("Chat %d", id)}
}

// rememberLocked stores a copy of m so replies and callback queries can refer to it.
func (s *Sim) rememberLocked(m *models.Message) {
	c := s.chatLocked(m.Chat.ID)
	if m.Chat.Type != "" && c.chat.Type == "" {
		c.chat = m.Chat
	}
	cp := *m
	cp.ReplyToMessage = nil
	c.messages[m.ID] = &cp
	c.lastMessageID = max(c.lastMessageID, m.ID)
	if len(c.messages) > 2*keptMessages {
		for id := range c.messages {
			if id <= c.lastMessageID-keptMessages {
				delete(c.messages, id)
			}
		}
	}
}

// unreachable is the error a send to c gets, if any.
func (c *chatState) unreachable() *apiError {
	switch {
	case c.notFound:
		return badRequest(DescChatNotFound)
	case c.migrateTo != 0:
		return &apiError{Code: http.StatusBadRequest, Description: DescMigrated, MigrateTo: c.migrateTo}
	case c.blocked:
		return &apiError{Code: http.StatusForbidden, Description: DescBlocked}
	}
	return nil
}

// Block makes sends to chatID fail with 403 "Forbidden: bot was blocked by the user".
func (s *Sim) Block(chatID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chatLocked(chatID).blocked = true
}

// Unblock undoes Block.
func (s *Sim) Unblock(chatID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chatLocked(chatID).blocked = false
}

// SetChatNotFound makes sends to chatID fail with 400 "Bad Request: chat not found". Chats are
// otherwise all reachable, known or not.
func (s *Sim) SetChatNotFound(chatID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chatLocked(chatID).notFound = true
}

// MigrateChat makes sends to the group chatID fail with 400 and parameters.migrate_to_chat_id = to,
// as after an upgrade to a supergroup.
func (s *Sim) MigrateChat(chatID, to int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chatLocked(chatID).migrateTo = to
}

// --- rate limits ------------------------------------------------------------------------------------

// Telegram's flood limits are its own rather than a simkit.Limiter: the group and global limits
// are sliding windows (N sends in any span), where Limiter's bucket refills continuously and would
// let a 21st message into a group within the minute; and a send must pass all three limits or
// consume none of them, with the longest wait as retry_after, where each Limiter counts an allowed
// call at once.

// window is a sliding-window counter of recent sends.
type window struct{ times []time.Time }

// wait returns how long until one more event fits limit events per span (0: now).
func (w *window) wait(now time.Time, span time.Duration, limit int) time.Duration {
	if limit <= 0 {
		return 0
	}
	cut := now.Add(-span)
	i := 0
	for i < len(w.times) && !w.times[i].After(cut) {
		i++
	}
	w.times = w.times[i:]
	if len(w.times) < limit {
		return 0
	}
	return w.times[len(w.times)-limit].Add(span).Sub(now)
}

func (w *window) add(now time.Time, limit int) {
	if limit > 0 {
		w.times = append(w.times, now)
	}
}

// SetRateLimits replaces the flood limits; a zero field disables that limit.
func (s *Sim) SetRateLimits(l RateLimits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = RateLimits{
		PerChatInterval: max(l.PerChatInterval, 0),
		GlobalPerSecond: max(l.GlobalPerSecond, 0),
		GroupPerMinute:  max(l.GroupPerMinute, 0),
	}
}

// RateLimits returns the flood limits in force.
func (s *Sim) RateLimits() RateLimits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limits
}

// rateLimitLocked answers 429 when a send to chatID now would break a limit, and otherwise counts it.
func (s *Sim) rateLimitLocked(c *chatState, chatID int64, now time.Time) *apiError {
	l := s.limits
	var wait time.Duration
	if l.PerChatInterval > 0 && !c.lastSend.IsZero() {
		wait = max(wait, c.lastSend.Add(l.PerChatInterval).Sub(now))
	}
	if chatID < 0 {
		wait = max(wait, c.group.wait(now, time.Minute, l.GroupPerMinute))
	}
	wait = max(wait, s.global.wait(now, time.Second, l.GlobalPerSecond))
	if wait > 0 {
		retry := simkit.RetryAfterSeconds(wait)
		return &apiError{Code: http.StatusTooManyRequests, Description: fmt.Sprintf(DescTooManyRequestsFmt, retry), RetryAfter: retry}
	}
	c.lastSend = now
	if chatID < 0 {
		c.group.add(now, l.GroupPerMinute)
	}
	s.global.add(now, l.GlobalPerSecond)
	return nil
}
