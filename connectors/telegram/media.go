package telegram

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strings"

	"github.com/go-telegram/bot"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// errTooBigToFetch is why media over the cloud Bot API's download limit is
// unavailable.
var errTooBigToFetch = errors.New(inTooBigReason)

// FetchMedia downloads an inbound file by its file_id (an attachment's
// FetchRef): getFile for its path, then a GET of the file URL. The caller
// closes the body. Files over 20 MB fail permanently with too_large: the
// cloud Bot API does not let bots download them.
func (c *Connector) FetchMedia(ctx context.Context, fileID string) (io.ReadCloser, connectors.MediaInfo, error) {
	if fileID == "" {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, "", errors.New("no telegram file id"))
	}
	f, err := c.api.GetFile(ctx, &bot.GetFileParams{FileID: fileID})
	if err != nil {
		if errors.Is(err, bot.ErrorBadRequest) && strings.Contains(strings.ToLower(telegramDescription(err)), "file is too big") {
			return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrTooLarge, "400", errTooBigToFetch)
		}
		return nil, connectors.MediaInfo{}, classify(fmt.Errorf("telegram getFile: %w", err))
	}
	if f.FileSize > inMaxDownload {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrTooLarge, "400", errTooBigToFetch)
	}
	if f.FilePath == "" {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, "", errors.New("telegram getFile answered without a file path"))
	}

	// The file URL holds the token: it must not reach logs or errors.
	fileURL := c.cfg.apiURL + "/file/bot" + string(c.cfg.token) + "/" + strings.TrimLeft(f.FilePath, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileURL, nil)
	if err != nil {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, "", fmt.Errorf("building the telegram file request: %w", scrubURL(err, c.cfg.token)))
	}
	resp, err := c.deps.HTTPClient.Do(req)
	if err != nil {
		return nil, connectors.MediaInfo{}, connectors.Transient("", fmt.Errorf("downloading telegram file: %w", scrubURL(err, c.cfg.token)))
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		ae := &apiError{Method: "file download", Status: resp.StatusCode, Description: http.StatusText(resp.StatusCode)}
		switch {
		case resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
			return nil, connectors.MediaInfo{}, connectors.Transient(ae.platformCode(), ae)
		case resp.StatusCode == http.StatusUnauthorized:
			return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrUnauthorized, ae.platformCode(), ae)
		}
		// The link from getFile expired or the file is gone.
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, ae.platformCode(), ae)
	}

	size := resp.ContentLength
	if size < 0 && f.FileSize > 0 {
		size = f.FileSize
	}
	info := connectors.MediaInfo{
		MimeType: mimeType(resp.Header.Get("Content-Type"), f.FilePath),
		Size:     size,
		Filename: path.Base(f.FilePath),
	}
	return resp.Body, info, nil
}

// mimeType prefers the server's content type unless it is the generic one
// Telegram's file server usually sends; then the file extension decides.
func mimeType(header, filePath string) string {
	if mt, _, err := mime.ParseMediaType(header); err == nil && mt != "application/octet-stream" {
		return header
	}
	if byExt := mime.TypeByExtension(strings.ToLower(path.Ext(filePath))); byExt != "" {
		return byExt
	}
	return "application/octet-stream"
}
