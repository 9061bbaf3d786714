package fakechat

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// FetchMedia downloads an inbound attachment by its FetchRef, "<account>
// <url>": a GET of the url with the account's access token. The token goes
// only to the origin of api_url, so an attachment hosted elsewhere is
// fetched without it. The caller closes the body; the media worker bounds
// its size. 404 and 410 (gone, or the link expired) fail permanently, 5xx
// and 429 pass.
func (c *Connector) FetchMedia(ctx context.Context, ref string) (io.ReadCloser, connectors.MediaInfo, error) {
	account, rawURL, _ := strings.Cut(ref, " ")
	token, ok := c.cfg.tokens[account]
	if !ok {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, "",
			fmt.Errorf("fakechat account %q of the attachment is not in this connector's settings", account))
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, "", errors.New("the attachment's url is not an absolute http(s) URL"))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, connectors.MediaInfo{}, connectors.Permanent(normalize.ErrPlatformError, "", fmt.Errorf("building fakechat media request: %w", err))
	}
	if c.sameOrigin(u) {
		req.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	resp, err := c.deps.HTTPClient.Do(req)
	if err != nil {
		return nil, connectors.MediaInfo{}, connectors.Transient("", fmt.Errorf("downloading fakechat attachment: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
		_ = resp.Body.Close()
		return nil, connectors.MediaInfo{}, classifyMedia(resp.StatusCode, resp.Header, body)
	}
	info := connectors.MediaInfo{
		MimeType: mediaType(resp.Header.Get("Content-Type")),
		Size:     resp.ContentLength,
		Filename: filename(resp.Header.Get("Content-Disposition"), u.Path),
	}
	return resp.Body, info, nil
}

// classifyMedia maps an unsuccessful media download. It is pure.
func classifyMedia(status int, header http.Header, body []byte) error {
	e := parseAPIError(status, body)
	code := e.platformCode()
	switch {
	case status == http.StatusTooManyRequests:
		return connectors.RetryAfter(retryAfter(header), code, e)
	case status >= 500:
		return connectors.Transient(code, e)
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return connectors.Permanent(normalize.ErrUnauthorized, code, e)
	}
	// 404, 410 (the file is gone or its link expired) and anything else.
	return connectors.Permanent(normalize.ErrPlatformError, code, e)
}

// sameOrigin reports whether u is on api_url's scheme and host.
func (c *Connector) sameOrigin(u *url.URL) bool {
	api, err := url.Parse(c.cfg.apiURL)
	return err == nil && strings.EqualFold(api.Scheme, u.Scheme) && strings.EqualFold(api.Host, u.Host)
}

// mediaType is the answer's content type, or the generic one.
func mediaType(header string) string {
	if _, _, err := mime.ParseMediaType(header); err == nil {
		return header
	}
	return "application/octet-stream"
}

// filename is the name in Content-Disposition, else the URL path's last
// segment.
func filename(disposition, urlPath string) string {
	if _, params, err := mime.ParseMediaType(disposition); err == nil && params["filename"] != "" {
		return path.Base(params["filename"])
	}
	if base := path.Base(urlPath); base != "." && base != "/" {
		return base
	}
	return ""
}
