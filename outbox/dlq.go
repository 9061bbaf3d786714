package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
)

// Headers of a dead-lettered command (PARLEY_DLQ_<R>). The body is the
// original command, byte for byte.
const (
	HeaderReplyID         = "Parley-Reply-Id"
	HeaderErrorCode       = "Parley-Error-Code"
	HeaderErrorMessage    = "Parley-Error-Message"
	HeaderPlatformCode    = "Parley-Platform-Code"
	HeaderAttempts        = "Parley-Attempts"
	HeaderOriginalSubject = "Parley-Original-Subject"
	HeaderOriginalSeq     = "Parley-Original-Seq"
	HeaderFailedAt        = "Parley-Failed-At"
)

// maxHeaderMessage bounds the error message carried in a header.
const maxHeaderMessage = 1024

// DeadLetter is one dead-lettered reply command.
type DeadLetter struct {
	Seq             uint64 // sequence in PARLEY_DLQ_<R>: what Replay and Purge take
	ReplyID         string
	ConversationID  string
	Subject         string // the DLQ subject
	OriginalSubject string // the command subject it was consumed from
	Code            normalize.ErrorCode
	Message         string
	PlatformCode    string
	Attempts        int
	FailedAt        time.Time
	Body            []byte // the original command
}

// deadLetter copies the command to the DLQ with its failure.
func (d *delivery) deadLetter(ctx context.Context, f failure) error {
	o := d.o
	platform, connector := d.platform, d.connector
	if platform == "" {
		platform = "unknown"
	}
	if connector == "" {
		connector = "unknown"
	}
	conv := d.info.Conversation
	if conv == "" {
		conv = string(d.statusConversation())
	}
	// The contract's Nats-Msg-Id is the reply command id. A replayed reply
	// that fails again needs another id, or the DLQ's dedupe window would
	// drop its second dead letter.
	msgID := d.replyID
	if g := d.marker.Generation; g > 0 {
		msgID += ":" + strconv.Itoa(g)
	}
	if d.reused {
		// Another command reused the id: its own dead letter, or the
		// dedupe window would drop it as the first one's.
		msgID += ":seq:" + strconv.FormatUint(d.seq, 10)
	}
	h := nats.Header{}
	// The body is the reply command, stored as it came.
	h.Set("Content-Type", bus.ContentTypeCloudEvents)
	h.Set(HeaderReplyID, d.replyID)
	h.Set(HeaderErrorCode, string(f.Code))
	h.Set(HeaderErrorMessage, clip(f.Message, maxHeaderMessage))
	h.Set(HeaderPlatformCode, clip(f.PlatformCode, 64))
	h.Set(HeaderAttempts, strconv.Itoa(f.Attempts))
	h.Set(HeaderOriginalSubject, d.msg.Subject())
	h.Set(HeaderOriginalSeq, strconv.FormatUint(d.seq, 10))
	h.Set(HeaderFailedAt, f.At.UTC().Format(time.RFC3339))
	_, err := o.opts.Bus.Publish(ctx, bus.Message{
		Subject: o.subj.DLQ(o.opts.Region, platform, connector, conv),
		MsgID:   msgID,
		Data:    d.body,
		Header:  h,
	})
	if err != nil {
		return fmt.Errorf("dead-lettering reply %s: %w", d.replyID, err)
	}
	return nil
}

func dlqStream(ctx context.Context, b *bus.Bus, region string) (jetstream.Stream, error) {
	s, err := b.JS().Stream(ctx, bus.StreamName(bus.StreamDLQ, region))
	if err != nil {
		return nil, fmt.Errorf("opening dead-letter stream of region %s: %w", region, err)
	}
	return s, nil
}

// ListDLQ returns the dead-lettered replies of a region, oldest first. The
// inbound dead letters that share the stream (platform updates that could
// not be stored) are not replies and are left out.
func ListDLQ(ctx context.Context, b *bus.Bus, region string) ([]DeadLetter, error) {
	s, err := dlqStream(ctx, b, region)
	if err != nil {
		return nil, err
	}
	var out []DeadLetter
	err = bus.Scan(ctx, s, b.Subjects().DLQs(region), func(m *jetstream.RawStreamMsg) error {
		if info, err := bus.ParseSubject(m.Subject); err == nil && info.Kind == bus.InboundKind {
			return nil
		}
		out = append(out, toDeadLetter(m))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading dead letters of region %s: %w", region, err)
	}
	return out, nil
}

func toDeadLetter(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	if h == nil {
		h = nats.Header{}
	}
	dl := DeadLetter{
		Seq:             m.Sequence,
		ReplyID:         h.Get(HeaderReplyID),
		Subject:         m.Subject,
		OriginalSubject: h.Get(HeaderOriginalSubject),
		Code:            normalize.ErrorCode(h.Get(HeaderErrorCode)),
		Message:         h.Get(HeaderErrorMessage),
		PlatformCode:    h.Get(HeaderPlatformCode),
		Body:            m.Data,
	}
	dl.Attempts, _ = strconv.Atoi(h.Get(HeaderAttempts))
	dl.FailedAt, _ = time.Parse(time.RFC3339, h.Get(HeaderFailedAt))
	if info, err := bus.ParseSubject(m.Subject); err == nil {
		dl.ConversationID = info.Conversation
	}
	return dl
}

// Replay puts dead-lettered commands back into the outbox: each is
// published again to the subject it came from, under a new Nats-Msg-Id
// (<reply>:replay:<dlq seq>) so the dedupe window does not drop it, after
// its reply's failure and attempt count are cleared (the parts already sent
// stay recorded and are not sent again). Then it is deleted from the DLQ.
// A replayed reply ends in a new reply.sent or reply.failed.
func Replay(ctx context.Context, b *bus.Bus, region string, seqs ...uint64) error {
	if len(seqs) == 0 {
		return errors.New("replaying dead letters: no sequence given")
	}
	s, err := dlqStream(ctx, b, region)
	if err != nil {
		return err
	}
	kv, err := b.JS().KeyValue(ctx, bus.BucketName(bus.BucketOutbox, region))
	if err != nil {
		return fmt.Errorf("opening outbox bucket of region %s: %w", region, err)
	}
	var errs []error
	for _, seq := range seqs {
		if err := replayOne(ctx, b, s, kv, seq); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func replayOne(ctx context.Context, b *bus.Bus, s jetstream.Stream, kv jetstream.KeyValue, seq uint64) error {
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	dl := toDeadLetter(m)
	target := dl.OriginalSubject
	if info, err := b.Subjects().Parse(target); err != nil || info.Class != bus.ClassCommand {
		return fmt.Errorf("dead letter %d: original subject %q is not a command subject", seq, target)
	}
	replyID := dl.ReplyID
	if replyID == "" {
		replyID = "seq-" + strconv.FormatUint(seq, 10)
	}
	if err := resetMarker(ctx, kv, replyID); err != nil {
		return fmt.Errorf("dead letter %d: %w", seq, err)
	}
	h := nats.Header{}
	h.Set(HeaderReplyID, replyID)
	if _, err := b.Publish(ctx, bus.Message{
		Subject: target,
		MsgID:   replyID + ":replay:" + strconv.FormatUint(seq, 10),
		Data:    dl.Body,
		Header:  h,
	}); err != nil {
		return fmt.Errorf("dead letter %d: re-publishing: %w", seq, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dead letter %d: deleting after replay: %w", seq, err)
	}
	return nil
}

// Purge deletes dead letters for good.
func Purge(ctx context.Context, b *bus.Bus, region string, seqs ...uint64) error {
	if len(seqs) == 0 {
		return errors.New("purging dead letters: no sequence given")
	}
	s, err := dlqStream(ctx, b, region)
	if err != nil {
		return err
	}
	var errs []error
	for _, seq := range seqs {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			errs = append(errs, fmt.Errorf("dead letter %d: %w", seq, err))
		}
	}
	return errors.Join(errs...)
}
