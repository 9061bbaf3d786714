package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/internal/directory"
	"github.com/parley-gateway/parley/normalize"
)

// ErrUnknownConversation is returned by Submit for a conversation the
// directory has never seen. It wraps directory.ErrUnknown, so either
// sentinel matches.
var ErrUnknownConversation error = unknownConversation{}

type unknownConversation struct{}

func (unknownConversation) Error() string { return "unknown conversation" }
func (unknownConversation) Unwrap() error { return directory.ErrUnknown }

// unknownRecheck bounds the re-reads of a conversation the directory does
// not know yet: 25+50+…+400 ms, under a second in all.
const unknownRecheck = 400 * time.Millisecond

// SubmitResult says where a submitted command was stored.
type SubmitResult struct {
	Subject string
	// Duplicate is true when a command with the same id was already stored
	// within the dedupe window; the new one was dropped.
	Duplicate bool
}

// Submit stores a reply command in the outbox of its conversation's region.
// Errors: a *normalize.InvalidReplyError when r is invalid; one wrapping
// ErrUnknownConversation when the directory does not know the conversation;
// one wrapping bus.ErrNotDurable when the command could not be stored.
func Submit(ctx context.Context, b *bus.Bus, dir *directory.Store, r *normalize.Reply) (SubmitResult, error) {
	if r == nil {
		return SubmitResult{}, &normalize.InvalidReplyError{Problems: []string{"no reply"}}
	}
	if err := r.Validate(); err != nil {
		return SubmitResult{}, err
	}
	e, _, err := dir.Get(ctx, r.ConversationID)
	// A helpdesk answers as soon as it sees an event; the event's directory
	// write is stored in the same batch but may land a moment later (or be
	// retried after a conflict), so an unknown conversation is read again
	// for a short while before it is called unknown.
	for wait := 25 * time.Millisecond; errors.Is(err, directory.ErrUnknown) && wait <= unknownRecheck; wait *= 2 {
		if !kit.Sleep(ctx, wait) {
			break
		}
		e, _, err = dir.Get(ctx, r.ConversationID)
	}
	if errors.Is(err, directory.ErrUnknown) {
		return SubmitResult{}, fmt.Errorf("conversation %s: %w", r.ConversationID, ErrUnknownConversation)
	}
	if err != nil {
		return SubmitResult{}, fmt.Errorf("submitting reply %s: %w", r.ID, err)
	}
	region := e.Region
	if region == "" {
		region = dir.Region()
	}
	body, err := json.Marshal(r)
	if err != nil {
		return SubmitResult{}, fmt.Errorf("encoding reply %s: %w", r.ID, err)
	}
	subject := b.Subjects().Command(region, e.Platform, e.Connector, string(r.ConversationID))
	res, err := b.Publish(ctx, bus.Message{Subject: subject, MsgID: r.ID, Data: body})
	if err != nil {
		return SubmitResult{}, fmt.Errorf("submitting reply %s: %w", r.ID, err)
	}
	return SubmitResult{Subject: subject, Duplicate: len(res) == 1 && res[0].Duplicate}, nil
}
