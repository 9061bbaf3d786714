package bus

import (
	"context"

	"github.com/nats-io/nats.go"
)

// PublishSyncForTest and PublishAsyncForTest expose both publish paths, so the benchmark can
// compare them whatever Publish picks for one message.
func (b *Bus) PublishSyncForTest(ctx context.Context, m Message) (PubResult, error) {
	nm, err := prepare(m)
	if err != nil {
		return PubResult{}, err
	}
	var res PubResult
	return res, b.publishSync(ctx, nm, &res)
}

func (b *Bus) PublishAsyncForTest(ctx context.Context, msgs ...Message) ([]PubResult, error) {
	prepared := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		nm, err := prepare(m)
		if err != nil {
			return nil, err
		}
		prepared[i] = nm
	}
	results := make([]PubResult, len(msgs))
	return results, b.publishAsync(ctx, prepared, results)
}
