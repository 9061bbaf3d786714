package media

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
)

// ErrNotFound is returned by Open when no region holds the media id.
var ErrNotFound = errors.New("media not found")

// Open streams a stored attachment, looking for it in each region in turn
// (a media id does not say its region). The caller closes the reader;
// contentType is the stored Content-Type ("application/octet-stream" when
// none was recorded). A malformed id is ErrNotFound: it cannot exist.
func Open(ctx context.Context, handles []*bus.Region, mediaID string) (rc io.ReadCloser, contentType string, size int64, err error) {
	if !normalize.ValidID("m_", mediaID) {
		return nil, "", 0, fmt.Errorf("media %q: %w", mediaID, ErrNotFound)
	}
	for _, r := range handles {
		if r == nil || r.Media == nil {
			continue
		}
		res, err := r.Media.Get(ctx, mediaID)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return nil, "", 0, fmt.Errorf("opening media %s in region %s: %w", mediaID, r.Name, err)
		}
		info, err := res.Info()
		if err != nil {
			res.Close()
			return nil, "", 0, fmt.Errorf("reading media %s info in region %s: %w", mediaID, r.Name, err)
		}
		ct := ""
		if info.Headers != nil {
			ct = info.Headers.Get("Content-Type")
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		return res, ct, int64(info.Size), nil
	}
	return nil, "", 0, fmt.Errorf("media %s: %w", mediaID, ErrNotFound)
}
