package telegramsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
)

// maxRequestBody bounds a request body: the Bot API accepts uploads up to 50 MB.
const maxRequestBody = 50<<20 + 1<<20

// upload is a file part of a multipart request.
type upload struct {
	filename string
	data     []byte
}

// params holds a request's parameters whatever the encoding. Values are strings as they would arrive
// in a form: a JSON body's strings are unquoted and its other values (numbers, objects, arrays) kept
// as JSON text, which is how clients send nested objects in forms anyway.
type params struct {
	values map[string]string
	files  map[string]upload
}

// readParams merges the query string with a JSON, urlencoded or multipart body.
func readParams(w http.ResponseWriter, r *http.Request) (*params, *apiError) {
	p := &params{values: map[string]string{}, files: map[string]upload{}}
	for k, vs := range r.URL.Query() {
		if len(vs) > 0 {
			p.values[k] = vs[len(vs)-1]
		}
	}
	if r.Body == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return p, nil
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return p, nil
	}
	mediaType, mtParams, err := mime.ParseMediaType(ct)
	if err != nil {
		return p, nil // the Bot API ignores bodies it cannot interpret
	}
	body := http.MaxBytesReader(w, r.Body, maxRequestBody)
	switch mediaType {
	case "application/json":
		data, err := io.ReadAll(body)
		if err != nil {
			return nil, bodyError(err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			return p, nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(data, &obj); err != nil {
			return nil, badRequest("Bad Request: can't parse JSON object")
		}
		for k, raw := range obj {
			raw = bytes.TrimSpace(raw)
			switch {
			case bytes.Equal(raw, []byte("null")):
			case len(raw) > 0 && raw[0] == '"':
				var s string
				if err := json.Unmarshal(raw, &s); err != nil {
					return nil, badRequest("Bad Request: can't parse JSON object")
				}
				p.values[k] = s
			default:
				p.values[k] = string(raw)
			}
		}
	case "application/x-www-form-urlencoded":
		r.Body = body
		if err := r.ParseForm(); err != nil {
			return nil, bodyError(err)
		}
		for k, vs := range r.PostForm {
			if len(vs) > 0 {
				p.values[k] = vs[len(vs)-1]
			}
		}
	case "multipart/form-data":
		if err := readMultipart(p, body, mtParams["boundary"]); err != nil {
			return nil, bodyError(err)
		}
	}
	return p, nil
}

func readMultipart(p *params, body io.Reader, boundary string) error {
	if boundary == "" {
		return errors.New("multipart body without boundary")
	}
	mr := multipart.NewReader(body, boundary)
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil // includes the empty body go-telegram/bot sends for methods without parameters
		}
		if err != nil {
			return err
		}
		data, err := io.ReadAll(part)
		if err != nil {
			return err
		}
		name := part.FormName()
		if name == "" {
			continue
		}
		if part.FileName() != "" {
			p.files[name] = upload{filename: part.FileName(), data: data}
			continue
		}
		p.values[name] = string(data)
	}
}

func bodyError(err error) *apiError {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return &apiError{Code: http.StatusRequestEntityTooLarge, Description: "Request Entity Too Large"}
	}
	return badRequest("Bad Request: can't read request body")
}

func (p *params) str(k string) string { return p.values[k] }

func (p *params) has(k string) bool {
	_, ok := p.values[k]
	return ok
}

// int64 parses an integer parameter; ok is false when it is absent or empty.
func (p *params) int64(k string) (v int64, ok bool, aerr *apiError) {
	s := strings.TrimSpace(p.values[k])
	if s == "" {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, badRequest("Bad Request: invalid " + k + " specified")
	}
	return v, true, nil
}

func (p *params) int(k string) (int, bool, *apiError) {
	v, ok, aerr := p.int64(k)
	return int(v), ok, aerr
}

func (p *params) bool(k string) bool {
	switch strings.ToLower(strings.TrimSpace(p.values[k])) {
	case "true", "1", "yes", "on":
		return true
	}
	return false
}

// json decodes an object or array parameter; ok is false when it is absent.
func (p *params) json(k string, v any) (ok bool, err error) {
	s := strings.TrimSpace(p.values[k])
	if s == "" {
		return false, nil
	}
	return true, json.Unmarshal([]byte(s), v)
}
