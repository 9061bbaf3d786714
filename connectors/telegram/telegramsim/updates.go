package telegramsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/go-telegram/bot/models"
)

// queuedUpdate is an update waiting to be confirmed (getUpdates) or delivered (webhook). Updates are
// stored encoded: they are served many times and the models types are not safe to encode
// concurrently.
type queuedUpdate struct {
	id   int64
	kind string // the update's field name, e.g. "message"
	raw  []byte
}

// defaultExcluded are the update kinds not delivered unless allowed_updates lists them.
var defaultExcluded = []string{
	models.AllowedUpdateChatMember, models.AllowedUpdateMessageReaction, models.AllowedUpdateMessageReactionCount,
}

// poller is an in-flight getUpdates call; waiting is set once it waits for updates.
type poller struct {
	terminated chan struct{}
	waiting    bool
}

// Enqueue queues an inbound update, assigning the next update_id (any ID set in u is ignored), and
// returns that id. It returns 0 only when u cannot be encoded, which is a bug in the caller's update
// (e.g. a ReactionType of an unsupported type); EnqueueJSON reports the error.
func (s *Sim) Enqueue(u models.Update) int64 {
	u.ID = 0
	raw, err := json.Marshal(&u)
	if err != nil {
		s.log.Error("telegramsim cannot encode the update to enqueue", "error", err)
		return 0
	}
	id, err := s.EnqueueJSON(raw)
	if err != nil {
		s.log.Error("telegramsim cannot enqueue the update", "error", err)
		return 0
	}
	return id
}

// EnqueueJSON queues an update given as a JSON object (its update_id, if any, is replaced) and
// returns the assigned update_id.
func (s *Sim) EnqueueJSON(raw []byte) (int64, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return 0, fmt.Errorf("decoding update: %w", err)
	}
	delete(fields, "update_id")
	if len(fields) == 0 {
		return 0, errors.New("decoding update: no update field")
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var probe updateProbe
	if err := json.Unmarshal(raw, &probe); err != nil {
		return 0, fmt.Errorf("decoding update: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextUpdateID
	s.nextUpdateID++
	var buf bytes.Buffer
	buf.WriteString(`{"update_id":`)
	buf.WriteString(strconv.FormatInt(id, 10))
	for _, k := range keys {
		kj, _ := json.Marshal(k)
		buf.WriteByte(',')
		buf.Write(kj)
		buf.WriteByte(':')
		buf.Write(fields[k])
	}
	buf.WriteByte('}')
	s.queue = append(s.queue, queuedUpdate{id: id, kind: keys[0], raw: buf.Bytes()})
	s.registerLocked(&probe)
	s.notifyLocked()
	return id, nil
}

// updateProbe is what the simulator remembers from inbound updates: messages (so replies and callback
// queries can refer to them) and callback query ids (so answerCallbackQuery can check them).
type updateProbe struct {
	Message               *models.Message `json:"message"`
	EditedMessage         *models.Message `json:"edited_message"`
	ChannelPost           *models.Message `json:"channel_post"`
	EditedChannelPost     *models.Message `json:"edited_channel_post"`
	BusinessMessage       *models.Message `json:"business_message"`
	EditedBusinessMessage *models.Message `json:"edited_business_message"`
	CallbackQuery         *struct {
		ID string `json:"id"`
	} `json:"callback_query"`
}

func (s *Sim) registerLocked(p *updateProbe) {
	for _, m := range []*models.Message{p.Message, p.ChannelPost, p.BusinessMessage} {
		if m != nil && m.ID > 0 {
			s.rememberLocked(m)
		}
	}
	for _, m := range []*models.Message{p.EditedMessage, p.EditedChannelPost, p.EditedBusinessMessage} {
		if m == nil || m.ID <= 0 {
			continue
		}
		c := s.chatLocked(m.Chat.ID)
		if old, ok := c.messages[m.ID]; ok {
			old.Text, old.Caption, old.EditDate = m.Text, m.Caption, m.EditDate
		} else {
			s.rememberLocked(m)
		}
	}
	if p.CallbackQuery != nil && p.CallbackQuery.ID != "" {
		s.callbacks[p.CallbackQuery.ID] = true
	}
}

// PendingUpdates returns the number of queued updates not yet confirmed or delivered.
func (s *Sim) PendingUpdates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// WaitDrained blocks until no update is pending (all confirmed by getUpdates or delivered to the
// webhook) or ctx ends.
func (s *Sim) WaitDrained(ctx context.Context) error {
	for {
		s.mu.Lock()
		n, ch := len(s.queue), s.changed
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d pending updates: %w", n, ctx.Err())
		}
	}
}

// WaitPolling blocks until a getUpdates call is waiting for updates (a long poll with nothing to
// return yet) or ctx ends.
func (s *Sim) WaitPolling(ctx context.Context) error {
	for {
		s.mu.Lock()
		waiting, ch := s.poll != nil && s.poll.waiting, s.changed
		s.mu.Unlock()
		if waiting {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for a long poll: %w", ctx.Err())
		}
	}
}

// AllowedUpdates returns the sticky allowed_updates setting; nil means the default (everything but
// chat_member, message_reaction and message_reaction_count).
func (s *Sim) AllowedUpdates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.allowed)
}

func (s *Sim) allowedLocked(kind string) bool {
	if len(s.allowed) == 0 {
		return !slices.Contains(defaultExcluded, kind)
	}
	return slices.Contains(s.allowed, kind)
}

// setAllowedParamLocked applies an allowed_updates parameter if present: a list replaces the setting,
// an empty list restores the default, absence keeps it.
func (s *Sim) setAllowedParamLocked(list []string, present bool) {
	if !present {
		return
	}
	if len(list) == 0 {
		s.allowed = nil
		return
	}
	s.allowed = slices.Clone(list)
}

func allowedParam(p *params) ([]string, bool, *apiError) {
	var list []string
	ok, err := p.json("allowed_updates", &list)
	if err != nil {
		return nil, false, badRequest("Bad Request: can't parse allowed updates")
	}
	return list, ok, nil
}

// pruneLocked drops queued updates whose kind is not allowed: Telegram does not create them.
func (s *Sim) pruneLocked() {
	n := 0
	for _, u := range s.queue {
		if s.allowedLocked(u.kind) {
			s.queue[n] = u
			n++
		}
	}
	if n != len(s.queue) {
		clear(s.queue[n:])
		s.queue = s.queue[:n]
	}
}

// confirmLocked forgets the updates an offset confirms.
func (s *Sim) confirmLocked(offset int64) {
	n := len(s.queue)
	switch {
	case offset > 0:
		i := sort.Search(n, func(i int) bool { return s.queue[i].id >= offset })
		s.queue = slices.Delete(s.queue, 0, i)
	case offset < 0:
		keep := int(min(-offset, int64(n)))
		s.queue = slices.Delete(s.queue, 0, n-keep)
	}
	if len(s.queue) != n {
		s.notifyLocked()
	}
}

// getUpdates serves long polling. Only one call may be in flight: a newer call terminates the older
// one with 409, as Telegram does.
func (s *Sim) getUpdates(ctx context.Context, p *params) (any, *apiError) {
	offset, _, aerr := p.int64("offset")
	if aerr != nil {
		return nil, aerr
	}
	limit, hasLimit, aerr := p.int("limit")
	if aerr != nil {
		return nil, aerr
	}
	if !hasLimit || limit <= 0 || limit > 100 {
		limit = 100
	}
	timeoutSec, _, aerr := p.int64("timeout")
	if aerr != nil {
		return nil, aerr
	}
	timeout := min(time.Duration(max(timeoutSec, 0))*time.Second, s.opts.MaxPollTimeout)
	allowed, hasAllowed, aerr := allowedParam(p)
	if aerr != nil {
		return nil, aerr
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.webhook != nil {
		return nil, &apiError{Code: http.StatusConflict, Description: DescConflictWebhook}
	}
	s.setAllowedParamLocked(allowed, hasAllowed)
	if s.poll != nil {
		close(s.poll.terminated)
	}
	me := &poller{terminated: make(chan struct{})}
	s.poll = me
	defer func() {
		if s.poll == me {
			s.poll = nil
		}
	}()
	s.confirmLocked(offset)

	var timer *time.Timer
	if timeout > 0 {
		timer = time.NewTimer(timeout)
		defer timer.Stop()
	}
	for {
		s.pruneLocked()
		if len(s.queue) > 0 || timer == nil || s.closed {
			return encodeUpdates(s.queue[:min(limit, len(s.queue))]), nil
		}
		if !me.waiting {
			me.waiting = true
			s.notifyLocked() // for WaitPolling
		}
		changed := s.changed
		s.mu.Unlock()
		expired := false
		select {
		case <-changed:
		case <-me.terminated:
		case <-ctx.Done():
			expired = true
		case <-timer.C:
			expired = true
		}
		s.mu.Lock()
		select {
		case <-me.terminated:
			return nil, &apiError{Code: http.StatusConflict, Description: DescConflictPoller}
		default:
		}
		if s.webhook != nil {
			return nil, &apiError{Code: http.StatusConflict, Description: DescConflictWebhook}
		}
		if expired {
			timer = nil
		}
	}
}

func encodeUpdates(us []queuedUpdate) json.RawMessage {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, u := range us {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(u.raw)
	}
	buf.WriteByte(']')
	return buf.Bytes()
}
