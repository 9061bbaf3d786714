package outbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
)

// marker is the durable record of one reply's delivery, keyed by reply id.
// It outlives the command (the bucket's TTL is 7 days), so a command
// published again with the same id after the dedupe window is not sent
// again either.
type marker struct {
	// PlatformIDs holds the platform id of every part sent so far, in
	// order; part i was sent iff i < len(PlatformIDs).
	PlatformIDs []string `json:"platform_ids"`
	// Attempts counts the tries of the reply across restarts: each
	// delivery that tried, plus each in-process retry. Status events
	// report it.
	Attempts int `json:"attempts"`
	// Deliveries counts the deliveries that tried; MaxAttempts bounds it.
	Deliveries int `json:"deliveries"`
	// Done is set once every part is sent.
	Done bool `json:"done"`
	// Generation counts replays from the dead-letter queue; it keeps the
	// ids of a replayed reply's DLQ message and failed status distinct.
	Generation int `json:"generation,omitempty"`
	// Failed is the terminal failure of this generation, so a redelivery
	// after a crash repeats the same outcome instead of trying again.
	Failed *failure `json:"failed,omitempty"`
	// Claim is set, by compare-and-set, just before a part is sent and
	// cleared when its outcome is recorded: while it is fresh no other
	// instance sends that part.
	Claim *claim `json:"claim,omitempty"`
}

// claim says an instance is sending part Part since At.
type claim struct {
	Part  int       `json:"part"`
	Owner string    `json:"owner"`
	At    time.Time `json:"at"`
}

// claimTTL is how long a claim holds: the longest send and the writing of
// its outcome. A claim older than that was left by an instance that died
// or hung mid-send, and the part's outcome is unknown: it is sent again.
// That is the one window in which a part can reach the platform twice
// (the platform accepted it, and the instance died before recording so).
const claimTTL = sendTimeout + finishTimeout

// live reports whether c, held for ttl, still holds at now.
func (c *claim) live(now time.Time, ttl time.Duration) bool { return c != nil && now.Sub(c.At) < ttl }

// failure is a terminal outcome recorded in a marker.
type failure struct {
	Code         normalize.ErrorCode `json:"code"`
	Message      string              `json:"message"`
	PlatformCode string              `json:"platform_code,omitempty"`
	Attempts     int                 `json:"attempts"`
	At           time.Time           `json:"at"`
	// Seq is the stream sequence of the command that failed, so that a
	// later command reusing the reply id can be told it was used.
	Seq uint64 `json:"seq,omitempty"`
}

func markerKey(replyID string) string { return "sent." + bus.Token(replyID) }

func holdKey(convToken string) string { return "hold." + bus.Token(convToken) }

// getMarker reads a reply's marker; a missing one is the zero marker with
// revision 0.
func getMarker(ctx context.Context, kv jetstream.KeyValue, replyID string) (marker, uint64, error) {
	e, err := kv.Get(ctx, markerKey(replyID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return marker{}, 0, nil
	}
	if err != nil {
		return marker{}, 0, fmt.Errorf("reading sent-marker of reply %s: %w", replyID, err)
	}
	var m marker
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		// A marker we cannot read must not stop the reply for ever; the
		// worst case is the one Parley could not have known about.
		return marker{}, e.Revision(), nil
	}
	return m, e.Revision(), nil
}

// markerMessage is the KV write of a reply's marker as a bus message, so
// that it shares a pipelined batch with the ledger records: a
// compare-and-set at rev (0: the key must not exist). Its msg id names the
// content and the revision it expects, so a different write is never
// dropped as a duplicate of this one.
func markerMessage(kv jetstream.KeyValue, replyID string, m marker, rev uint64) (bus.Message, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return bus.Message{}, fmt.Errorf("encoding sent-marker of reply %s: %w", replyID, err)
	}
	key := markerKey(replyID)
	sum := sha256.Sum256(b)
	revStr := strconv.FormatUint(rev, 10)
	return bus.Message{
		Subject: "$KV." + kv.Bucket() + "." + key,
		MsgID:   "marker:" + key + ":" + revStr + ":" + hex.EncodeToString(sum[:16]),
		Data:    b,
		Header: nats.Header{
			"Content-Type":                      []string{"application/json"},
			jetstream.ExpectedLastSubjSeqHeader: []string{revStr},
		},
		Conditional: true,
	}, nil
}

// resetMarker starts a new generation of a reply's marker for a replay:
// the failure and the attempt count are cleared, the parts already sent are
// kept (they must not be sent again). It retries on concurrent writes.
func resetMarker(ctx context.Context, kv jetstream.KeyValue, replyID string) error {
	for range 10 {
		m, rev, err := getMarker(ctx, kv, replyID)
		if err != nil {
			return err
		}
		m.Failed = nil
		m.Attempts = 0
		m.Deliveries = 0
		m.Generation++
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding sent-marker of reply %s: %w", replyID, err)
		}
		if rev == 0 {
			_, err = kv.Create(ctx, markerKey(replyID), b)
		} else {
			_, err = kv.Update(ctx, markerKey(replyID), b, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongRevision(err) {
			return fmt.Errorf("resetting sent-marker of reply %s: %w", replyID, err)
		}
	}
	return fmt.Errorf("resetting sent-marker of reply %s: too many concurrent updates", replyID)
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// putHold records that the head of a conversation, at stream sequence seq,
// waits out a NakWithDelay. Ordering itself is enforced by the stream (see
// the package doc); the hold lets operators and later instances see why a
// conversation is not moving.
func putHold(ctx context.Context, kv jetstream.KeyValue, convToken string, seq uint64) error {
	if _, err := kv.Put(ctx, holdKey(convToken), []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("writing hold of conversation %s: %w", convToken, err)
	}
	return nil
}

// clearHold removes a conversation's hold if it still names seq; a hold
// written since for another command is left alone.
func clearHold(ctx context.Context, kv jetstream.KeyValue, convToken string, seq uint64) error {
	e, err := kv.Get(ctx, holdKey(convToken))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading hold of conversation %s: %w", convToken, err)
	}
	if string(e.Value()) != strconv.FormatUint(seq, 10) {
		return nil
	}
	err = kv.Delete(ctx, holdKey(convToken), jetstream.LastRevision(e.Revision()))
	if err != nil && !isWrongRevision(err) {
		return fmt.Errorf("clearing hold of conversation %s: %w", convToken, err)
	}
	return nil
}
