package telegramsim

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/go-telegram/bot/models"
)

// fileEntry is a file the bot can fetch with getFile and download.
type fileEntry struct {
	id       string
	uniqueID string
	path     string
	name     string // original file name, if any
	data     []byte
	size     int64 // as reported; may exceed len(data) to model big files
}

func (f *fileEntry) model() models.File {
	return models.File{FileID: f.id, FileUniqueID: f.uniqueID, FileSize: f.size, FilePath: f.path}
}

func uniqueID(fileID string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(fileID))
	return fmt.Sprintf("AQAD%x", h.Sum64())
}

// AddFile registers a downloadable file under fileID and returns its file_path. size is what
// getFile reports (0 means len(data)); above MaxDownloadSize getFile answers 400 "file is too big",
// which lets tests model big files without allocating them. Adding an existing fileID replaces its
// content and keeps its path.
func (s *Sim) AddFile(fileID string, data []byte, size int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addFileLocked(fileID, "files", "", data, int64(size)).path
}

// addFileLocked registers a file; dir and name shape its path ("photos/file_3.jpg").
func (s *Sim) addFileLocked(fileID, dir, name string, data []byte, size int64) *fileEntry {
	if size <= 0 {
		size = int64(len(data))
	}
	data = bytes.Clone(data)
	if f, ok := s.files[fileID]; ok {
		f.data, f.size = data, size
		if name != "" {
			f.name = name
		}
		return f
	}
	s.nextFile++
	p := fmt.Sprintf("%s/file_%d%s", dir, s.nextFile, path.Ext(name))
	f := &fileEntry{id: fileID, uniqueID: uniqueID(fileID), path: p, name: name, data: data, size: size}
	s.files[fileID] = f
	s.filesByPath[p] = f
	return f
}

// newFileLocked registers a file under a fresh file_id.
func (s *Sim) newFileLocked(kind, dir, name string, data []byte) *fileEntry {
	id := fmt.Sprintf("sim-%s-%d-%d", kind, s.botID, s.nextFile+1)
	return s.addFileLocked(id, dir, name, data, 0)
}

// File returns the content registered under fileID (by AddFile, an update builder or an upload).
func (s *Sim) File(fileID string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[fileID]
	if !ok {
		return nil, false
	}
	return bytes.Clone(f.data), true
}

func (s *Sim) getFile(_ context.Context, p *params) (any, *apiError) {
	id := p.str("file_id")
	if id == "" {
		return nil, badRequest("Bad Request: file_id is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[id]
	if !ok {
		return nil, badRequest(DescInvalidFileID)
	}
	if f.size > MaxDownloadSize {
		return nil, badRequest(DescFileTooBig)
	}
	m := f.model()
	return &m, nil
}

// serveFile answers GET /file/bot<token>/<file_path>; rest is "<token>/<file_path>".
func (s *Sim) serveFile(w http.ResponseWriter, r *http.Request, rest string) {
	s.mu.Lock()
	s.requests[FileDownloadKey]++
	s.mu.Unlock()
	token, filePath, _ := strings.Cut(rest, "/")
	if token != s.token {
		writeError(w, &apiError{Code: http.StatusUnauthorized, Description: DescUnauthorized})
		return
	}
	if f, ok := s.failures.Take(FileDownloadKey); ok && f.Serve(w, r) {
		return
	}
	s.mu.Lock()
	f, ok := s.filesByPath[filePath]
	var data []byte
	if ok {
		data = f.data
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, &apiError{Code: http.StatusNotFound, Description: DescNotFound})
		return
	}
	ct := mime.TypeByExtension(path.Ext(filePath))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
}
