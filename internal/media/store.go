package media

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/internal/bus"
	"github.com/parley-gateway/parley/normalize"
)

// ObjectMeta is how a media object is laid out in a region's object store:
// named after its media id, its content type in the Content-Type header
// and its file name ("" when unknown) in the "filename" metadata. The
// worker stores every download this way; Store reads it back.
func ObjectMeta(id normalize.MediaID, contentType, filename string) jetstream.ObjectMeta {
	return jetstream.ObjectMeta{
		Name:     string(id),
		Headers:  nats.Header{"Content-Type": []string{contentType}},
		Metadata: map[string]string{metaFilename: filename},
	}
}

// Store is the connectors.MediaStore of one region: a connector of that
// region opens the media stored there, and only there.
type Store struct {
	region *bus.Region
}

// NewStore returns the media store over region's object store.
func NewStore(region *bus.Region) *Store { return &Store{region: region} }

// OpenMedia implements connectors.MediaStore. A malformed or unknown id
// wraps both connectors.ErrNotFound and ErrNotFound.
func (s *Store) OpenMedia(ctx context.Context, id normalize.MediaID) (io.ReadCloser, connectors.MediaInfo, error) {
	if !normalize.ValidID("m_", string(id)) {
		return nil, connectors.MediaInfo{}, fmt.Errorf("media %q: %w: %w", id, connectors.ErrNotFound, ErrNotFound)
	}
	if s == nil || s.region == nil || s.region.Media == nil {
		return nil, connectors.MediaInfo{}, fmt.Errorf("media %s: no object store", id)
	}
	res, err := s.region.Media.Get(ctx, string(id))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, connectors.MediaInfo{}, fmt.Errorf("media %s in region %s: %w: %w", id, s.region.Name, connectors.ErrNotFound, ErrNotFound)
	}
	if err != nil {
		return nil, connectors.MediaInfo{}, fmt.Errorf("opening media %s in region %s: %w", id, s.region.Name, err)
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, connectors.MediaInfo{}, fmt.Errorf("reading media %s info in region %s: %w", id, s.region.Name, err)
	}
	mi := connectors.MediaInfo{Size: int64(info.Size), Filename: info.Metadata[metaFilename]}
	if info.Headers != nil {
		mi.MimeType = info.Headers.Get("Content-Type")
	}
	if mi.MimeType == "" {
		mi.MimeType = "application/octet-stream"
	}
	return res, mi, nil
}

var _ connectors.MediaStore = (*Store)(nil)
