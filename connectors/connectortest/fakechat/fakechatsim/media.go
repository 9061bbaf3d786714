package fakechatsim

import (
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// blob is one registered attachment.
type blob struct {
	account  string
	data     []byte
	mimeType string
	filename string
	gone     bool
}

// AddMedia registers a file account's customer sends, downloadable with
// that account's token, and returns the attachment to put in a message
// event (its kind from mimeType).
func (s *Server) AddMedia(account string, data []byte, mimeType, filename string) Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextMedia++
	id := "fm_media_" + strconv.Itoa(s.nextMedia)
	s.media[id] = &blob{account: account, data: append([]byte(nil), data...), mimeType: mimeType, filename: filename}
	return Attachment{
		Kind:     kindOf(mimeType),
		URL:      s.URL + "/media/" + id,
		MimeType: mimeType,
		Size:     int64(len(data)),
		Filename: filename,
	}
}

// RemoveMedia makes the attachment at url gone: downloads answer 410, as
// an expired link does.
func (s *Server) RemoveMedia(url string) {
	id := url[strings.LastIndex(url, "/")+1:]
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.media[id]; b != nil {
		b.gone = true
	}
}

func kindOf(mimeType string) string {
	switch {
	case strings.HasPrefix(mimeType, "image/"):
		return "image"
	case strings.HasPrefix(mimeType, "video/"):
		return "video"
	case strings.HasPrefix(mimeType, "audio/"):
		return "audio"
	}
	return "file"
}

// serveMedia is GET /media/{id}, with the owning account's token.
func (s *Server) serveMedia(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b := s.media[r.PathValue("id")]
	gone := b != nil && b.gone
	s.mu.Unlock()
	if b == nil {
		writeError(w, http.StatusNotFound, CodeNotFound, "no such media")
		return
	}
	if !bearer(r, s.tokens[b.account]) {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "invalid access token")
		return
	}
	if f, ok := s.failures.Take(KeyMedia); ok && f.Serve(w, r) {
		return
	}
	if gone {
		writeError(w, http.StatusGone, CodeGone, "the media expired")
		return
	}
	h := w.Header()
	h.Set("Content-Type", b.mimeType)
	h.Set("Content-Length", strconv.Itoa(len(b.data)))
	if b.filename != "" {
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": b.filename}))
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.data)
}
