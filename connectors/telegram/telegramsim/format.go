package telegramsim

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-telegram/bot/models"
)

// Telegram counts message length in UTF-16 code units of the text left after entity parsing. These
// parsers reproduce that text, the entities Telegram would report, and the "can't parse entities"
// errors for malformed markup, closely enough that a message the simulator accepts is one Telegram
// would accept.

// formatError is a markup error; its text follows "Bad Request: can't parse entities: ".
type formatError struct{ msg string }

func (e *formatError) Error() string { return e.msg }

func formatErrorf(format string, args ...any) *formatError {
	return &formatError{msg: fmt.Sprintf(format, args...)}
}

// utf16Len is the length of s in UTF-16 code units, the unit of Telegram's limits and entity offsets.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		if r >= 0x10000 {
			n += 2
		} else {
			n++
		}
	}
	return n
}

// parseFormatted returns the plain text and entities of text under parseMode ("" means plain text).
func parseFormatted(text, parseMode string) (string, []models.MessageEntity, error) {
	switch strings.ToLower(parseMode) {
	case "":
		return text, nil, nil
	case "html":
		return parseHTML(text)
	case "markdownv2":
		return parseMarkdownV2(text)
	case "markdown":
		return parseMarkdownV1(text)
	}
	return "", nil, errUnsupportedParseMode
}

var errUnsupportedParseMode = &formatError{msg: "unsupported parse_mode"}

// textBuilder accumulates plain text and tracks its length in UTF-16 units.
type textBuilder struct {
	b   strings.Builder
	u16 int
}

func (t *textBuilder) writeString(s string) {
	t.b.WriteString(s)
	t.u16 += utf16Len(s)
}

func (t *textBuilder) writeRune(r rune) {
	t.b.WriteRune(r)
	if r >= 0x10000 {
		t.u16 += 2
	} else {
		t.u16++
	}
}

func sortEntities(es []models.MessageEntity) []models.MessageEntity {
	slices.SortStableFunc(es, func(a, b models.MessageEntity) int {
		if c := cmp.Compare(a.Offset, b.Offset); c != 0 {
			return c
		}
		return cmp.Compare(b.Length, a.Length)
	})
	return es
}

// --- HTML -------------------------------------------------------------------------------------------

type htmlTag struct {
	name   string
	start  int // UTF-16 offset in the output
	url    string
	lang   string
	emoji  string
	expand bool
}

var htmlEntityTypes = map[string]models.MessageEntityType{
	"b": models.MessageEntityTypeBold, "strong": models.MessageEntityTypeBold,
	"i": models.MessageEntityTypeItalic, "em": models.MessageEntityTypeItalic,
	"u": models.MessageEntityTypeUnderline, "ins": models.MessageEntityTypeUnderline,
	"s": models.MessageEntityTypeStrikethrough, "strike": models.MessageEntityTypeStrikethrough,
	"del":        models.MessageEntityTypeStrikethrough,
	"span":       models.MessageEntityTypeSpoiler,
	"tg-spoiler": models.MessageEntityTypeSpoiler,
	"a":          models.MessageEntityTypeTextLink,
	"code":       models.MessageEntityTypeCode,
	"pre":        models.MessageEntityTypePre,
	"blockquote": models.MessageEntityTypeBlockquote,
	"tg-emoji":   models.MessageEntityTypeCustomEmoji,
}

func isTagNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' }

// parseHTML implements Telegram's HTML parse mode: the supported tags, the four named entities plus
// numeric ones, and strict nesting.
func parseHTML(s string) (string, []models.MessageEntity, error) {
	var (
		out      textBuilder
		stack    []htmlTag
		entities []models.MessageEntity
	)
	i := 0
	for i < len(s) {
		c := s[i]
		switch c {
		case '&':
			if r, n := htmlEntity(s[i:]); n > 0 {
				out.writeRune(r)
				i += n
				continue
			}
			out.writeString("&")
			i++
		case '<':
			if i+1 < len(s) && s[i+1] == '/' {
				j := i + 2
				for j < len(s) && isTagNameByte(s[j]) {
					j++
				}
				name := strings.ToLower(s[i+2 : j])
				for j < len(s) && isSpace(s[j]) {
					j++
				}
				if j >= len(s) || s[j] != '>' {
					return "", nil, formatErrorf("Unclosed end tag at byte offset %d", i)
				}
				if len(stack) == 0 {
					return "", nil, formatErrorf("Unexpected end tag at byte offset %d", i)
				}
				top := stack[len(stack)-1]
				if name != top.name {
					return "", nil, formatErrorf("Unmatched end tag at byte offset %d, expected \"</%s>\", found \"</%s>\"", i, top.name, name)
				}
				stack = stack[:len(stack)-1]
				entities = closeHTMLTag(entities, stack, top, out.u16)
				i = j + 1
				continue
			}
			tag, next, err := parseStartTag(s, i)
			if err != nil {
				return "", nil, err
			}
			tag.start = out.u16
			stack = append(stack, tag)
			i = next
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			out.writeRune(r)
			i += size
		}
	}
	if len(stack) > 0 {
		return "", nil, formatErrorf("Can't find end tag corresponding to start tag \"%s\"", stack[len(stack)-1].name)
	}
	return out.b.String(), sortEntities(entities), nil
}

// closeHTMLTag turns a closed tag into an entity. A <code class="language-x"> directly inside <pre>
// gives the pre its language instead of producing an entity of its own.
func closeHTMLTag(es []models.MessageEntity, stack []htmlTag, t htmlTag, end int) []models.MessageEntity {
	if t.name == "code" && len(stack) > 0 && stack[len(stack)-1].name == "pre" {
		if t.lang != "" {
			stack[len(stack)-1].lang = t.lang
		}
		return es
	}
	if end == t.start {
		return es // Telegram drops empty entities
	}
	e := models.MessageEntity{Type: htmlEntityTypes[t.name], Offset: t.start, Length: end - t.start}
	switch t.name {
	case "a":
		e.URL = t.url
		if strings.HasPrefix(t.url, "tg://user?id=") {
			if id, err := strconv.ParseInt(strings.TrimPrefix(t.url, "tg://user?id="), 10, 64); err == nil {
				e.Type, e.URL, e.User = models.MessageEntityTypeTextMention, "", &models.User{ID: id}
			}
		}
	case "pre":
		e.Language = t.lang
	case "blockquote":
		if t.expand {
			e.Type = models.MessageEntityTypeExpandableBlockquote
		}
	case "tg-emoji":
		e.CustomEmojiID = t.emoji
	}
	return append(es, e)
}

// parseStartTag parses the tag starting at s[i] == '<' and returns it and the index after '>'.
func parseStartTag(s string, i int) (htmlTag, int, error) {
	j := i + 1
	for j < len(s) && isTagNameByte(s[j]) {
		j++
	}
	name := strings.ToLower(s[i+1 : j])
	if name == "" {
		return htmlTag{}, 0, formatErrorf("Unexpected end of name token at byte offset %d", i)
	}
	if _, ok := htmlEntityTypes[name]; !ok {
		return htmlTag{}, 0, formatErrorf("Unsupported start tag \"%s\" at byte offset %d", name, i)
	}
	attrs := map[string]string{}
	for {
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) {
			return htmlTag{}, 0, formatErrorf("Unclosed start tag at byte offset %d", i)
		}
		if s[j] == '>' {
			j++
			break
		}
		if s[j] == '/' && j+1 < len(s) && s[j+1] == '>' {
			j += 2
			break
		}
		k := j
		for k < len(s) && isTagNameByte(s[k]) {
			k++
		}
		if k == j {
			return htmlTag{}, 0, formatErrorf("Empty attribute name in the tag \"%s\" at byte offset %d", name, j)
		}
		attr := strings.ToLower(s[j:k])
		j = k
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) || s[j] != '=' {
			attrs[attr] = ""
			continue
		}
		j++
		for j < len(s) && isSpace(s[j]) {
			j++
		}
		if j >= len(s) {
			return htmlTag{}, 0, formatErrorf("Unclosed start tag at byte offset %d", i)
		}
		var raw string
		if q := s[j]; q == '"' || q == '\'' {
			end := strings.IndexByte(s[j+1:], q)
			if end < 0 {
				return htmlTag{}, 0, formatErrorf("Unclosed start tag at byte offset %d", i)
			}
			raw = s[j+1 : j+1+end]
			j += end + 2
		} else {
			k := j
			for k < len(s) && !isSpace(s[k]) && s[k] != '>' {
				k++
			}
			raw, j = s[j:k], k
		}
		attrs[attr] = decodeHTMLEntities(raw)
	}

	tag := htmlTag{name: name}
	switch name {
	case "a":
		tag.url = attrs["href"]
	case "span":
		if attrs["class"] != "tg-spoiler" {
			return htmlTag{}, 0, formatErrorf("Tag \"span\" must have class \"tg-spoiler\" at byte offset %d", i)
		}
	case "code":
		tag.lang = strings.TrimPrefix(attrs["class"], "language-")
		if tag.lang == attrs["class"] {
			tag.lang = ""
		}
	case "blockquote":
		_, tag.expand = attrs["expandable"]
	case "tg-emoji":
		id, ok := attrs["emoji-id"]
		if !ok || id == "" {
			return htmlTag{}, 0, formatErrorf("Tag \"tg-emoji\" must have attribute \"emoji-id\" at byte offset %d", i)
		}
		tag.emoji = id
	}
	return tag, j, nil
}

// htmlEntity decodes the entity at the start of s; n is 0 when s does not start with one Telegram
// supports, in which case the '&' is literal.
func htmlEntity(s string) (rune, int) {
	for _, e := range [...]struct {
		name string
		r    rune
	}{{"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}, {"&quot;", '"'}} {
		if strings.HasPrefix(s, e.name) {
			return e.r, len(e.name)
		}
	}
	if !strings.HasPrefix(s, "&#") {
		return 0, 0
	}
	end := strings.IndexByte(s, ';')
	if end < 3 || end > 12 {
		return 0, 0
	}
	digits, base := s[2:end], 10
	if digits[0] == 'x' || digits[0] == 'X' {
		digits, base = digits[1:], 16
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if err != nil || v == 0 || v > utf8.MaxRune || (v >= 0xD800 && v <= 0xDFFF) {
		return 0, 0
	}
	return rune(v), end + 1
}

func decodeHTMLEntities(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '&' {
			if r, n := htmlEntity(s[i:]); n > 0 {
				b.WriteRune(r)
				i += n
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// --- MarkdownV2 -------------------------------------------------------------------------------------

const markdownV2Reserved = "_*[]()~`>#+-=|{}.!"

type mdEntity struct {
	typ    models.MessageEntityType
	start  int // UTF-16 offset in the output
	offset int // byte offset in the input, for errors
	emoji  bool
}

var mdEntityNames = map[models.MessageEntityType]string{
	models.MessageEntityTypeBold:          "Bold",
	models.MessageEntityTypeItalic:        "Italic",
	models.MessageEntityTypeUnderline:     "Underline",
	models.MessageEntityTypeStrikethrough: "Strikethrough",
	models.MessageEntityTypeSpoiler:       "Spoiler",
	models.MessageEntityTypeTextLink:      "TextUrl",
	models.MessageEntityTypeCustomEmoji:   "CustomEmoji",
}

// parseMarkdownV2 implements Telegram's MarkdownV2: every reserved character outside an entity marker
// must be escaped with '\'. Markers toggle their entity, so nesting is accepted in any order.
func parseMarkdownV2(s string) (string, []models.MessageEntity, error) {
	var (
		out        textBuilder
		open       []mdEntity
		entities   []models.MessageEntity
		quoteStart = -1 // UTF-16 start of the blockquote in progress
		quoteExp   bool
	)
	toggle := func(t models.MessageEntityType, at int) {
		for k := len(open) - 1; k >= 0; k-- {
			if open[k].typ == t {
				if out.u16 > open[k].start {
					entities = append(entities, models.MessageEntity{Type: t, Offset: open[k].start, Length: out.u16 - open[k].start})
				}
				open = slices.Delete(open, k, k+1)
				return
			}
		}
		open = append(open, mdEntity{typ: t, start: out.u16, offset: at})
	}
	closeQuote := func() {
		if quoteStart >= 0 && out.u16 > quoteStart {
			t := models.MessageEntityTypeBlockquote
			if quoteExp {
				t = models.MessageEntityTypeExpandableBlockquote
			}
			entities = append(entities, models.MessageEntity{Type: t, Offset: quoteStart, Length: out.u16 - quoteStart})
		}
		quoteStart, quoteExp = -1, false
	}

	i := 0
	for i < len(s) {
		lineStart := i == 0 || s[i-1] == '\n'
		if lineStart {
			switch {
			case strings.HasPrefix(s[i:], "**>"):
				closeQuote()
				quoteStart, quoteExp = out.u16, true
				i += 3
				continue
			case s[i] == '>':
				if quoteStart < 0 {
					quoteStart = out.u16
				}
				i++
				continue
			case quoteStart >= 0:
				closeQuote()
			}
		}
		c := s[i]
		switch {
		case c == '\\':
			if i+1 < len(s) {
				r, size := utf8.DecodeRuneInString(s[i+1:])
				out.writeRune(r)
				i += 1 + size
			} else {
				out.writeString("\\")
				i++
			}
		case c == '`':
			pre := strings.HasPrefix(s[i:], "```")
			text, lang, next, err := markdownV2Code(s, i, pre)
			if err != nil {
				return "", nil, err
			}
			start := out.u16
			out.writeString(text)
			if out.u16 > start {
				e := models.MessageEntity{Type: models.MessageEntityTypeCode, Offset: start, Length: out.u16 - start}
				if pre {
					e.Type, e.Language = models.MessageEntityTypePre, lang
				}
				entities = append(entities, e)
			}
			i = next
		case c == '*':
			toggle(models.MessageEntityTypeBold, i)
			i++
		case c == '_':
			if i+1 < len(s) && s[i+1] == '_' {
				toggle(models.MessageEntityTypeUnderline, i)
				i += 2
			} else {
				toggle(models.MessageEntityTypeItalic, i)
				i++
			}
		case c == '~':
			toggle(models.MessageEntityTypeStrikethrough, i)
			i++
		case c == '|' && i+1 < len(s) && s[i+1] == '|':
			if quoteExp && !slices.ContainsFunc(open, func(e mdEntity) bool { return e.typ == models.MessageEntityTypeSpoiler }) &&
				(i+2 == len(s) || s[i+2] == '\n') {
				i += 2
				closeQuote()
				continue
			}
			toggle(models.MessageEntityTypeSpoiler, i)
			i += 2
		case c == '[' || (c == '!' && i+1 < len(s) && s[i+1] == '['):
			emoji := c == '!'
			open = append(open, mdEntity{typ: models.MessageEntityTypeTextLink, start: out.u16, offset: i, emoji: emoji})
			if emoji {
				i++
			}
			i++
		case c == ']':
			k := slices.IndexFunc(open, func(e mdEntity) bool { return e.typ == models.MessageEntityTypeTextLink })
			if k < 0 {
				return "", nil, reservedError(c)
			}
			link := open[k]
			open = slices.Delete(open, k, k+1)
			i++
			if i >= len(s) || s[i] != '(' {
				continue // "[text]" without a URL is plain text
			}
			url, next, ok := markdownV2URL(s, i+1)
			if !ok {
				return "", nil, formatErrorf("Can't find end of a url at byte offset %d", i)
			}
			i = next
			if out.u16 > link.start {
				e := models.MessageEntity{Type: models.MessageEntityTypeTextLink, Offset: link.start, Length: out.u16 - link.start, URL: url}
				if link.emoji {
					e.Type, e.URL = models.MessageEntityTypeCustomEmoji, ""
					e.CustomEmojiID = strings.TrimPrefix(url, "tg://emoji?id=")
				}
				entities = append(entities, e)
			}
		case strings.IndexByte(markdownV2Reserved, c) >= 0:
			return "", nil, reservedError(c)
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			out.writeRune(r)
			i += size
		}
	}
	closeQuote()
	if len(open) > 0 {
		e := open[0]
		return "", nil, formatErrorf("Can't find end of %s entity at byte offset %d", mdEntityNames[e.typ], e.offset)
	}
	return out.b.String(), sortEntities(entities), nil
}

func reservedError(c byte) error {
	return formatErrorf("Character '%c' is reserved and must be escaped with the preceding '\\'", c)
}

// markdownV2Code reads a `code` or ```pre``` span starting at s[i]; inside it only '`' and '\' are
// special.
func markdownV2Code(s string, i int, pre bool) (text, lang string, next int, err error) {
	start := i
	if pre {
		i += 3
		if nl := strings.IndexByte(s[i:], '\n'); nl >= 0 && !strings.ContainsAny(s[i:i+nl], " `") {
			lang, i = s[i:i+nl], i+nl+1
		}
	} else {
		i++
	}
	var b strings.Builder
	for i < len(s) {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			b.WriteByte(s[i+1])
			i += 2
		case pre && strings.HasPrefix(s[i:], "```"):
			return b.String(), lang, i + 3, nil
		case !pre && s[i] == '`':
			return b.String(), "", i + 1, nil
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	name := "Code"
	if pre {
		name = "Pre"
	}
	return "", "", 0, formatErrorf("Can't find end of %s entity at byte offset %d", name, start)
}

// markdownV2URL reads a link target up to its unescaped ')'.
func markdownV2URL(s string, i int) (string, int, bool) {
	var b strings.Builder
	for i < len(s) {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				b.WriteByte(s[i+1])
				i += 2
				continue
			}
			return "", 0, false
		case ')':
			return b.String(), i + 1, true
		}
		b.WriteByte(s[i])
		i++
	}
	return "", 0, false
}

// --- Markdown (legacy) ------------------------------------------------------------------------------

// parseMarkdownV1 implements the legacy Markdown mode: *bold*, _italic_, `code`, ```pre```,
// [text](url), no nesting, '\' escapes only the marker characters.
func parseMarkdownV1(s string) (string, []models.MessageEntity, error) {
	var (
		out      textBuilder
		entities []models.MessageEntity
	)
	add := func(t models.MessageEntityType, text, url, lang string) {
		start := out.u16
		out.writeString(text)
		if out.u16 > start {
			entities = append(entities, models.MessageEntity{Type: t, Offset: start, Length: out.u16 - start, URL: url, Language: lang})
		}
	}
	i := 0
	for i < len(s) {
		c := s[i]
		switch c {
		case '\\':
			if i+1 < len(s) && strings.IndexByte("_*`[", s[i+1]) >= 0 {
				out.writeString(s[i+1 : i+2])
				i += 2
				continue
			}
			out.writeString("\\")
			i++
		case '*', '_':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return "", nil, formatErrorf("Can't find end of the entity starting at byte offset %d", i)
			}
			t := models.MessageEntityTypeBold
			if c == '_' {
				t = models.MessageEntityTypeItalic
			}
			add(t, s[i+1:i+1+end], "", "")
			i += end + 2
		case '`':
			if strings.HasPrefix(s[i:], "```") {
				end := strings.Index(s[i+3:], "```")
				if end < 0 {
					return "", nil, formatErrorf("Can't find end of the entity starting at byte offset %d", i)
				}
				body, lang := s[i+3:i+3+end], ""
				if nl := strings.IndexByte(body, '\n'); nl >= 0 && !strings.ContainsAny(body[:nl], " ") {
					lang, body = body[:nl], body[nl+1:]
				}
				add(models.MessageEntityTypePre, body, "", lang)
				i += end + 6
				continue
			}
			end := strings.IndexByte(s[i+1:], '`')
			if end < 0 {
				return "", nil, formatErrorf("Can't find end of the entity starting at byte offset %d", i)
			}
			add(models.MessageEntityTypeCode, s[i+1:i+1+end], "", "")
			i += end + 2
		case '[':
			endText := strings.IndexByte(s[i+1:], ']')
			if endText < 0 {
				return "", nil, formatErrorf("Can't find end of the entity starting at byte offset %d", i)
			}
			text := s[i+1 : i+1+endText]
			j := i + 1 + endText + 1
			if j < len(s) && s[j] == '(' {
				endURL := strings.IndexByte(s[j+1:], ')')
				if endURL < 0 {
					return "", nil, formatErrorf("Can't find end of the entity starting at byte offset %d", i)
				}
				add(models.MessageEntityTypeTextLink, text, s[j+1:j+1+endURL], "")
				i = j + 1 + endURL + 1
				continue
			}
			out.writeString(text)
			i = j
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			out.writeRune(r)
			i += size
		}
	}
	return out.b.String(), sortEntities(entities), nil
}
