package normalize

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// InlineKind says what an Inline is.
type InlineKind uint8

// The kinds of Inline. The zero value is plain text.
const (
	InlineText   InlineKind = iota // literal text in Text
	InlineBold                     // Children shown bold
	InlineItalic                   // Children shown italic
	InlineCode                     // Text shown monospace, verbatim
	InlinePre                      // Text as a preformatted block, verbatim; Lang names its language if given
	InlineLink                     // Children linking to URL
)

var mdKindNames = [...]string{"text", "bold", "italic", "code", "pre", "link"}

func (k InlineKind) String() string {
	if int(k) < len(mdKindNames) {
		return mdKindNames[k]
	}
	return "unknown"
}

// Inline is one node of reply text parsed from Parley's Markdown subset.
// Connectors walk a []Inline to produce their platform's own formatting.
//
// ParseMarkdown returns trees with these invariants, which connectors may
// rely on:
//   - Text, Code and Pre nodes have non-empty Text and no Children; two Text
//     nodes are never adjacent.
//   - Bold, Italic and Link nodes have at least one child. Bold never occurs
//     inside Bold, Italic never inside Italic, Link never inside Link, and
//     two Bold (or two Italic) nodes are never adjacent.
//   - A Link's URL uses http, https, mailto or tg.
//   - Code never contains a blank line; Pre may.
//   - Lang, when set, matches [A-Za-z0-9_+#.-]{1,32}.
type Inline struct {
	Kind     InlineKind
	Text     string // for Text, Code and Pre
	URL      string // for Link
	Lang     string // for Pre
	Children []Inline
}

// ParseMarkdown parses the Markdown subset of reply text: **bold** and
// __bold__, *italic* and _italic_, `code`, ```pre``` (an optional language
// on the opening fence's line), [text](url) links and backslash escapes.
// Everything else is literal text, so it never fails: a marker without its
// partner stays as typed, and a link to a scheme other than http, https,
// mailto or tg stays as its literal source.
//
// Emphasis follows CommonMark's delimiter rules: an underscore inside a
// word (snake_case) is text, while asterisks may emphasise part of a word
// (2*3*4 has an italic 3). Three or more backticks always make a Pre, fewer
// make Code; inside them every character is literal. No span but Pre
// reaches across a blank line. A link's URL has no whitespace and no
// unescaped ']'. Newlines are kept as they are.
func ParseMarkdown(s string) []Inline {
	p := mdParser{src: s}
	p.head = &mdNode{}
	p.tail = p.head
	p.run()
	return mdClean(p.collect(p.head, nil), false, false)
}

// MarkdownToHTML renders reply Markdown as Telegram-compatible HTML.
func MarkdownToHTML(s string) string { return RenderHTML(ParseMarkdown(s)) }

// MarkdownToPlain renders reply Markdown as plain text, formatting removed.
func MarkdownToPlain(s string) string { return RenderPlain(ParseMarkdown(s)) }

// RenderHTML renders nodes as HTML of the kind Telegram's parse_mode HTML
// accepts: <b>, <i>, <code>, <pre>, <pre><code class="language-x"> and
// <a href>. Text is escaped (& < >, and " inside attributes) and newlines are
// kept. Telegram does not allow code inside a link, so there code and pre
// show as their plain text; a link whose URL has a disallowed scheme shows
// as its text, and one without text shows its URL.
func RenderHTML(nodes []Inline) string {
	var b strings.Builder
	mdHTML(&b, nodes, false)
	return b.String()
}

// RenderPlain renders nodes as plain text: formatting is dropped and a link
// becomes "text (url)", or just the text when it already is the URL.
func RenderPlain(nodes []Inline) string {
	var b strings.Builder
	mdPlain(&b, nodes)
	return b.String()
}

func mdHTML(b *strings.Builder, nodes []Inline, inLink bool) {
	for _, n := range nodes {
		switch n.Kind {
		case InlineText:
			mdEscapeHTML(b, n.Text, false)
		case InlineBold:
			b.WriteString("<b>")
			mdHTML(b, n.Children, inLink)
			b.WriteString("</b>")
		case InlineItalic:
			b.WriteString("<i>")
			mdHTML(b, n.Children, inLink)
			b.WriteString("</i>")
		case InlineCode, InlinePre:
			switch {
			case inLink:
				mdEscapeHTML(b, n.Text, false)
			case n.Kind == InlineCode:
				b.WriteString("<code>")
				mdEscapeHTML(b, n.Text, false)
				b.WriteString("</code>")
			case mdLangOK(n.Lang):
				b.WriteString(`<pre><code class="language-`)
				mdEscapeHTML(b, n.Lang, true)
				b.WriteString(`">`)
				mdEscapeHTML(b, n.Text, false)
				b.WriteString("</code></pre>")
			default:
				b.WriteString("<pre>")
				mdEscapeHTML(b, n.Text, false)
				b.WriteString("</pre>")
			}
		case InlineLink:
			if inLink || !mdURLOK(n.URL) {
				mdHTML(b, n.Children, inLink)
				continue
			}
			b.WriteString(`<a href="`)
			mdEscapeHTML(b, n.URL, true)
			b.WriteString(`">`)
			if len(n.Children) == 0 {
				mdEscapeHTML(b, n.URL, false)
			}
			mdHTML(b, n.Children, true)
			b.WriteString("</a>")
		default: // a kind from a newer Parley: keep its text
			mdEscapeHTML(b, n.Text, false)
			mdHTML(b, n.Children, inLink)
		}
	}
}

func mdEscapeHTML(b *strings.Builder, s string, attr bool) {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '"':
			if !attr {
				continue
			}
			esc = "&quot;"
		default:
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(esc)
		last = i + 1
	}
	b.WriteString(s[last:])
}

func mdPlain(b *strings.Builder, nodes []Inline) {
	for _, n := range nodes {
		switch n.Kind {
		case InlineLink:
			var t strings.Builder
			mdPlain(&t, n.Children)
			text := t.String()
			b.WriteString(text)
			switch {
			case n.URL == "" || text == n.URL || "mailto:"+text == n.URL:
			case text == "":
				b.WriteString(n.URL)
			default:
				b.WriteString(" (")
				b.WriteString(n.URL)
				b.WriteString(")")
			}
		default:
			b.WriteString(n.Text)
			mdPlain(b, n.Children)
		}
	}
}

// mdURLOK reports whether u may become a link: an allowed scheme followed by
// something, and no whitespace or control characters.
func mdURLOK(u string) bool {
	for i := 0; i < len(u); i++ {
		if u[i] <= ' ' || u[i] == 0x7f {
			return false
		}
	}
	for _, scheme := range [...]string{"https://", "http://", "mailto:", "tg:"} {
		if len(u) > len(scheme) && strings.EqualFold(u[:len(scheme)], scheme) {
			return true
		}
	}
	return false
}

// mdLangOK reports whether s can name a code block's language; the check
// keeps the class attribute and the fence line unambiguous.
func mdLangOK(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '+' || c == '#' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// The parser follows CommonMark's inline algorithm: a left-to-right scan
// builds a linked list of nodes, with a stack of emphasis delimiter runs
// and a stack of '[' openers. ']' resolves links as it is met; emphasis is
// resolved when a link closes, at a blank line and at the end.

type mdNode struct {
	prev, next *mdNode
	in         Inline // delimiter and bracket nodes are Text holding their markers
}

type mdDelim struct {
	prev, next        *mdDelim
	node              *mdNode
	ch                byte
	n, orig           int // characters left, characters in the run as written
	canOpen, canClose bool
}

type mdBracket struct {
	node   *mdNode
	below  *mdDelim // top of the delimiter stack when '[' was read
	active bool     // false once inside a completed link: links do not nest
}

type mdParser struct {
	src        string
	head, tail *mdNode  // head is a sentinel
	delims     *mdDelim // top of the delimiter stack
	brackets   []mdBracket
	text       strings.Builder
	ticks      map[int][]int // backtick run length → offsets of such runs
}

var mdSpecial = [256]bool{'\\': true, '`': true, '*': true, '_': true, '[': true, ']': true, '\n': true}

func (p *mdParser) run() {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		if !mdSpecial[c] {
			j := i + 1
			for j < len(s) && !mdSpecial[s[j]] {
				j++
			}
			p.text.WriteString(s[i:j])
			i = j
			continue
		}
		switch c {
		case '\\':
			if i+1 < len(s) && mdASCIIPunct(s[i+1]) {
				p.text.WriteByte(s[i+1])
				i += 2
			} else {
				p.text.WriteByte('\\')
				i++
			}
		case '`':
			i = p.backticks(i)
		case '*', '_':
			n := mdRun(s, i, c)
			p.delimiter(i, n)
			i += n
		case '[':
			p.flush()
			p.brackets = append(p.brackets, mdBracket{node: p.push(Inline{Text: "["}), below: p.delims, active: true})
			i++
		case ']':
			i = p.closeBracket(i)
		case '\n':
			j := i + 1
			for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r') {
				j++
			}
			if j < len(s) && s[j] == '\n' { // a blank line ends every open span
				p.text.WriteString(s[i:j])
				p.flush()
				p.emphasis(nil)
				p.brackets = p.brackets[:0]
				i = j
			} else {
				p.text.WriteByte('\n')
				i++
			}
		}
	}
	p.flush()
	p.emphasis(nil)
}

func mdRun(s string, i int, c byte) int {
	j := i
	for j < len(s) && s[j] == c {
		j++
	}
	return j - i
}

func mdASCIIPunct(c byte) bool {
	return c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~'
}

func (p *mdParser) flush() {
	if p.text.Len() > 0 {
		p.push(Inline{Text: p.text.String()})
		p.text.Reset()
	}
}

func (p *mdParser) push(in Inline) *mdNode {
	n := &mdNode{prev: p.tail, in: in}
	p.tail.next = n
	p.tail = n
	return n
}

func (p *mdParser) unlink(n *mdNode) {
	n.prev.next = n.next
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		p.tail = n.prev
	}
}

// collect returns the nodes after from and before to (nil: to the end),
// unlinking them.
func (p *mdParser) collect(from, to *mdNode) []Inline {
	var out []Inline
	for n := from.next; n != to; n = n.next {
		out = append(out, n.in)
	}
	from.next = to
	if to != nil {
		to.prev = from
	} else {
		p.tail = from
	}
	return out
}

func (p *mdParser) backticks(i int) int {
	s := p.src
	n := mdRun(s, i, '`')
	if p.ticks == nil {
		p.ticks = make(map[int][]int)
		for j := 0; j < len(s); {
			if s[j] != '`' {
				j++
				continue
			}
			k := mdRun(s, j, '`')
			p.ticks[k] = append(p.ticks[k], j)
			j += k
		}
	}
	// The closer is the next run of exactly n backticks. Runs are recorded
	// from the raw text, since backslashes do not escape inside code.
	runs := p.ticks[n]
	k, _ := slices.BinarySearch(runs, i+n)
	if k < len(runs) {
		raw := s[i+n : runs[k]]
		if n >= 3 {
			lang, text := mdFence(raw)
			p.flush()
			p.push(Inline{Kind: InlinePre, Text: text, Lang: lang})
			return runs[k] + n
		}
		if !mdHasBlankLine(raw) {
			if len(raw) >= 2 && raw[0] == ' ' && raw[len(raw)-1] == ' ' && strings.Trim(raw, " ") != "" {
				raw = raw[1 : len(raw)-1]
			}
			p.flush()
			p.push(Inline{Kind: InlineCode, Text: raw})
			return runs[k] + n
		}
	}
	p.text.WriteString(s[i : i+n])
	return i + n
}

// mdFence splits what lies between ``` fences into the language named on
// the opening line, if any, and the content.
func mdFence(raw string) (lang, text string) {
	text = raw
	if nl := strings.IndexByte(raw, '\n'); nl >= 0 {
		first := strings.TrimSpace(raw[:nl])
		if first == "" || mdLangOK(first) {
			lang, text = first, raw[nl+1:]
		}
	}
	return lang, strings.TrimSuffix(text, "\n")
}

func mdHasBlankLine(s string) bool {
	for i := strings.IndexByte(s, '\n'); i >= 0; {
		j := i + 1
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r') {
			j++
		}
		if j < len(s) && s[j] == '\n' {
			return true
		}
		k := strings.IndexByte(s[j:], '\n')
		if k < 0 {
			break
		}
		i = j + k
	}
	return false
}

func (p *mdParser) delimiter(i, n int) {
	s, c := p.src, p.src[i]
	before, after := ' ', ' '
	if i > 0 {
		before, _ = utf8.DecodeLastRuneInString(s[:i])
	}
	if i+n < len(s) {
		after, _ = utf8.DecodeRuneInString(s[i+n:])
	}
	canOpen, canClose := mdFlanking(c, before, after)
	p.flush()
	node := p.push(Inline{Text: s[i : i+n]})
	if !canOpen && !canClose {
		return
	}
	d := &mdDelim{prev: p.delims, node: node, ch: c, n: n, orig: n, canOpen: canOpen, canClose: canClose}
	if p.delims != nil {
		p.delims.next = d
	}
	p.delims = d
}

// mdFlanking applies CommonMark's flanking rules to a run of c between
// before and after (a space at either end of the text).
func mdFlanking(c byte, before, after rune) (canOpen, canClose bool) {
	bs, as := unicode.IsSpace(before), unicode.IsSpace(after)
	bp, ap := mdPunct(before), mdPunct(after)
	left := !as && (!ap || bs || bp)
	right := !bs && (!bp || as || ap)
	canOpen, canClose = left, right
	if c == '_' {
		canOpen = left && (!right || bp)
		canClose = right && (!left || ap)
	}
	return canOpen, canClose
}

func mdPunct(r rune) bool { return unicode.IsPunct(r) || unicode.IsSymbol(r) }

func (p *mdParser) removeDelim(d *mdDelim) {
	if d.prev != nil {
		d.prev.next = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else {
		p.delims = d.prev
	}
}

// emphasis pairs the delimiter runs above bottom into Bold and Italic nodes
// ("process emphasis" in the CommonMark spec) and then drops them from the
// stack; the unpaired ones stay as literal text.
func (p *mdParser) emphasis(bottom *mdDelim) {
	var openersBottom [2][2][3]*mdDelim // by character, closer can open, run length mod 3
	for a := range openersBottom {
		for b := range openersBottom[a] {
			for c := range openersBottom[a][b] {
				openersBottom[a][b][c] = bottom
			}
		}
	}
	var closer *mdDelim
	for d := p.delims; d != nil && d != bottom; d = d.prev {
		closer = d
	}
	for closer != nil {
		if !closer.canClose {
			closer = closer.next
			continue
		}
		ci, oi := 0, 0
		if closer.ch == '_' {
			ci = 1
		}
		if closer.canOpen {
			oi = 1
		}
		floor := openersBottom[ci][oi][closer.orig%3]
		opener := closer.prev
		for ; opener != nil && opener != bottom && opener != floor; opener = opener.prev {
			if opener.ch != closer.ch || !opener.canOpen {
				continue
			}
			// CommonMark's "rule of 3" keeps *a**b* from pairing wrongly.
			odd := (closer.canOpen || opener.canClose) && (opener.orig+closer.orig)%3 == 0 &&
				(opener.orig%3 != 0 || closer.orig%3 != 0)
			if !odd {
				break
			}
		}
		if opener == nil || opener == bottom || opener == floor {
			openersBottom[ci][oi][closer.orig%3] = closer.prev
			next := closer.next
			if !closer.canOpen {
				p.removeDelim(closer)
			}
			closer = next
			continue
		}
		use, kind := 1, InlineItalic
		if opener.n >= 2 && closer.n >= 2 {
			use, kind = 2, InlineBold
		}
		opener.n -= use
		closer.n -= use
		opener.node.in.Text = opener.node.in.Text[:opener.n]
		closer.node.in.Text = closer.node.in.Text[:closer.n]
		children := p.collect(opener.node, closer.node)
		span := &mdNode{prev: opener.node, next: closer.node, in: Inline{Kind: kind, Children: children}}
		opener.node.next = span
		closer.node.prev = span
		for d := closer.prev; d != opener; {
			prev := d.prev
			p.removeDelim(d)
			d = prev
		}
		if opener.n == 0 {
			p.unlink(opener.node)
			p.removeDelim(opener)
		}
		if closer.n == 0 {
			next := closer.next
			p.unlink(closer.node)
			p.removeDelim(closer)
			closer = next
		}
	}
	for p.delims != nil && p.delims != bottom {
		p.removeDelim(p.delims)
	}
}

func (p *mdParser) closeBracket(i int) int {
	if len(p.brackets) == 0 {
		p.text.WriteByte(']')
		return i + 1
	}
	b := p.brackets[len(p.brackets)-1]
	p.brackets = p.brackets[:len(p.brackets)-1]
	if !b.active {
		p.text.WriteByte(']')
		return i + 1
	}
	url, end, ok := mdDestination(p.src, i+1)
	if !ok || !mdURLOK(url) {
		p.text.WriteByte(']')
		return i + 1
	}
	p.flush()
	p.emphasis(b.below)
	children := p.collect(b.node, nil)
	if len(children) == 0 {
		children = []Inline{{Text: url}}
	}
	b.node.in = Inline{Kind: InlineLink, URL: url, Children: children}
	for k := range p.brackets {
		p.brackets[k].active = false
	}
	return end
}

// mdDestination reads "(url)" at s[i:]: spaces or tabs may surround the URL,
// which has no whitespace and no ']', balanced parentheses and may use
// backslash escapes. It returns the URL and the offset after ')'.
func mdDestination(s string, i int) (string, int, bool) {
	if i >= len(s) || s[i] != '(' {
		return "", 0, false
	}
	i++
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	var url strings.Builder
	depth := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && mdASCIIPunct(s[i+1]):
			url.WriteByte(s[i+1])
			i += 2
			continue
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return url.String(), i + 1, true
			}
			depth--
		case c == ']':
			// Not even inside a URL: so every scan ends before the next
			// "](", and parsing stays linear. Escape it or write %5D.
			return "", 0, false
		case c <= ' ' || c == 0x7f:
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			if depth == 0 && i < len(s) && s[i] == ')' {
				return url.String(), i + 1, true
			}
			return "", 0, false
		}
		url.WriteByte(c)
		i++
	}
	return "", 0, false
}

// mdClean makes the parsed tree canonical: no empty nodes, adjacent Text
// merged, no Bold in Bold or Italic in Italic (the inner one only repeats
// the outer), adjacent Bold or Italic merged, and a Bold holding only an
// Italic turned into an Italic holding a Bold, which is what ***x*** parses
// to. A canonical tree writes back to Markdown that parses to itself.
func mdClean(nodes []Inline, inBold, inItalic bool) []Inline {
	var c mdCleaner
	c.add(nodes, inBold, inItalic)
	c.flush()
	return c.out
}

// mdCleaner gathers a canonical list of nodes. Text is gathered in a
// builder so that many pieces of text, or deeply nested emphasis, join in
// linear time.
type mdCleaner struct {
	out  []Inline
	text strings.Builder
}

func (c *mdCleaner) add(nodes []Inline, inBold, inItalic bool) {
	for _, n := range nodes {
		switch n.Kind {
		case InlineText:
			c.text.WriteString(n.Text)
			continue
		case InlineCode, InlinePre:
			if n.Text == "" {
				continue
			}
			n.Children = nil
		case InlineBold:
			if inBold {
				c.add(n.Children, inBold, inItalic)
				continue
			}
			cs := mdClean(n.Children, true, inItalic)
			if len(cs) == 0 {
				continue
			}
			n.Children = cs
			if len(cs) == 1 && cs[0].Kind == InlineItalic {
				n = Inline{Kind: InlineItalic, Children: []Inline{{Kind: InlineBold, Children: cs[0].Children}}}
			}
		case InlineItalic:
			if inItalic {
				c.add(n.Children, inBold, inItalic)
				continue
			}
			n.Children = mdClean(n.Children, inBold, true)
			if len(n.Children) == 0 {
				continue
			}
		case InlineLink:
			n.Children = mdClean(n.Children, inBold, inItalic)
			if len(n.Children) == 0 {
				n.Children = []Inline{{Text: n.URL}}
			}
		}
		c.flush()
		c.out = mdAppend(c.out, n)
	}
}

func (c *mdCleaner) flush() {
	if c.text.Len() > 0 {
		c.out = mdAppend(c.out, Inline{Text: c.text.String()})
		c.text.Reset()
	}
}

func mdAppend(out []Inline, nodes ...Inline) []Inline {
	for _, n := range nodes {
		if len(out) > 0 {
			last := &out[len(out)-1]
			switch {
			case n.Kind == InlineText && last.Kind == InlineText:
				last.Text += n.Text
				continue
			case n.Kind == last.Kind && (n.Kind == InlineBold || n.Kind == InlineItalic):
				last.Children = mdAppend(slices.Clip(last.Children), n.Children...)
				continue
			}
		}
		out = append(out, n)
	}
	return out
}

// mdSource writes nodes back as Markdown that ParseMarkdown reads as the
// same nodes; SplitMarkdown relies on it to return chunks as Markdown. A
// few trees have no such writing with this writer's choices (emphasis
// inside a word that touches more emphasis, say). For those it drops
// nested emphasis, then all emphasis, then all formatting, until the text
// parses back as written, so the words always survive. It also returns
// what the Markdown parses to.
func mdSource(nodes []Inline) (string, []Inline) {
	var b strings.Builder
	for step := range 3 {
		if step > 0 {
			nodes = mdClean(mdStripEmphasis(nodes, step == 1, false), false, false)
		}
		for _, stars := range []bool{false, true} {
			b.Reset()
			mdWriteSource(&b, nodes, ' ', stars)
			if back := ParseMarkdown(b.String()); mdEqual(back, nodes) {
				return b.String(), back
			}
		}
	}
	b.Reset()
	mdEscapeSource(&b, RenderPlain(nodes))
	return b.String(), ParseMarkdown(b.String())
}

// mdStripEmphasis replaces Bold and Italic nodes by their children: those
// inside other emphasis if onlyNested, else all of them.
func mdStripEmphasis(nodes []Inline, onlyNested, inEmphasis bool) []Inline {
	out := make([]Inline, 0, len(nodes))
	for _, n := range nodes {
		emphasis := n.Kind == InlineBold || n.Kind == InlineItalic
		n.Children = mdStripEmphasis(n.Children, onlyNested, inEmphasis || emphasis)
		if emphasis && (inEmphasis || !onlyNested) {
			out = append(out, n.Children...)
			continue
		}
		out = append(out, n)
	}
	return out
}

// mdEqual reports whether two trees are the same, an empty Children the
// same as a nil one.
func mdEqual(a, b []Inline) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.Kind != y.Kind || x.Text != y.Text || x.URL != y.URL || x.Lang != y.Lang || !mdEqual(x.Children, y.Children) {
			return false
		}
	}
	return true
}

// mdWriteSource writes nodes; after is the character that will follow them.
// With stars, emphasis is always written with asterisks.
func mdWriteSource(b *strings.Builder, nodes []Inline, after rune, stars bool) {
	for i, n := range nodes {
		next := after
		if i+1 < len(nodes) {
			next = mdFirstRune(nodes[i+1])
		}
		switch n.Kind {
		case InlineText:
			mdEscapeSource(b, n.Text)
		case InlineBold, InlineItalic:
			marker := mdMarker(b.String(), n, next, stars)
			b.WriteString(marker)
			mdWriteSource(b, n.Children, rune(marker[0]), stars)
			b.WriteString(marker)
		case InlineCode:
			mdWriteCode(b, n.Text)
		case InlinePre:
			fence := 3
			for mdHasTickRun(n.Text, fence) {
				fence++
			}
			b.WriteString(strings.Repeat("`", fence))
			if mdLangOK(n.Lang) {
				b.WriteString(n.Lang)
			}
			b.WriteByte('\n')
			b.WriteString(n.Text)
			b.WriteByte('\n')
			b.WriteString(strings.Repeat("`", fence))
		case InlineLink:
			b.WriteByte('[')
			mdWriteSource(b, n.Children, ']', stars)
			b.WriteString("](")
			for i := 0; i < len(n.URL); i++ {
				if c := n.URL[i]; c == '\\' || c == '(' || c == ')' {
					b.WriteByte('\\')
				}
				b.WriteByte(n.URL[i])
			}
			b.WriteByte(')')
		default:
			mdEscapeSource(b, n.Text)
			mdWriteSource(b, n.Children, next, stars)
		}
	}
}

// mdMarker picks the delimiter for a Bold or Italic written after out and
// before next. Asterisks work inside words, so they are the default; when
// they would touch other asterisks, whose runs CommonMark pairs by rules
// that can regroup them, underscores are used if they can open and close
// there.
func mdMarker(out string, n Inline, next rune, stars bool) string {
	star, under := "*", "_"
	if n.Kind == InlineBold {
		star, under = "**", "__"
	}
	if stars || len(n.Children) == 0 {
		return star
	}
	prev := ' '
	if out != "" {
		prev, _ = utf8.DecodeLastRuneInString(out)
	}
	first, last := n.Children[0], n.Children[len(n.Children)-1]
	emphasis := func(k InlineKind) bool { return k == InlineBold || k == InlineItalic }
	if prev != '*' && next != '*' && !emphasis(first.Kind) && !emphasis(last.Kind) {
		return star
	}
	if canOpen, _ := mdFlanking('_', prev, mdFirstRune(first)); !canOpen {
		return star
	}
	if _, canClose := mdFlanking('_', mdLastRune(last), next); !canClose {
		return star
	}
	return under
}

// mdFirstRune is the first character mdWriteSource writes for n, or one of
// its kind where that is not yet decided.
func mdFirstRune(n Inline) rune {
	switch n.Kind {
	case InlineText:
		if n.Text == "" {
			return ' '
		}
		switch c := n.Text[0]; c {
		case '*', '_', '`', '[', ']':
			return '\\'
		}
		r, _ := utf8.DecodeRuneInString(n.Text)
		return r
	case InlineBold, InlineItalic:
		return '*'
	case InlineCode, InlinePre:
		return '`'
	case InlineLink:
		return '['
	}
	return ' '
}

// mdLastRune is the last character mdWriteSource writes for n, or one of
// its kind.
func mdLastRune(n Inline) rune {
	switch n.Kind {
	case InlineText:
		if n.Text == "" {
			return ' '
		}
		r, _ := utf8.DecodeLastRuneInString(n.Text)
		return r
	case InlineBold, InlineItalic:
		return '*'
	case InlineCode, InlinePre:
		return '`'
	case InlineLink:
		return ')'
	}
	return ' '
}

func mdEscapeSource(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '*', '_', '`', '[', ']':
			b.WriteByte('\\')
		case '\\':
			if i+1 == len(s) || mdASCIIPunct(s[i+1]) {
				b.WriteByte('\\')
			}
		}
		b.WriteByte(s[i])
	}
}

func mdWriteCode(b *strings.Builder, s string) {
	if s == "" {
		return
	}
	fence := "`"
	if mdHasTickRun(s, 1) {
		fence = "``"
	}
	pad := s[0] == '`' || s[len(s)-1] == '`' ||
		s[0] == ' ' && s[len(s)-1] == ' ' && strings.Trim(s, " ") != ""
	b.WriteString(fence)
	if pad {
		b.WriteByte(' ')
	}
	b.WriteString(s)
	if pad {
		b.WriteByte(' ')
	}
	b.WriteString(fence)
}

// mdHasTickRun reports whether s holds a run of exactly n backticks.
func mdHasTickRun(s string, n int) bool {
	for i := 0; i < len(s); {
		if s[i] != '`' {
			i++
			continue
		}
		k := mdRun(s, i, '`')
		if k == n {
			return true
		}
		i += k
	}
	return false
}
