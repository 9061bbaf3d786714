package bus

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Scan calls fn with every message of s on subjects matching filter, in
// stream order, one direct get per message; it returns fn's first error or
// the stream's. It suits the small, inspected streams (dead letters); a
// large stream wants a consumer.
func Scan(ctx context.Context, s jetstream.Stream, filter string, fn func(*jetstream.RawStreamMsg) error) error {
	for seq := uint64(1); ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
		seq = m.Sequence + 1
	}
}
