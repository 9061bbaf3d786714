package normalize

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// UTF16Len is the length of s in UTF-16 code units, the unit of Telegram's
// 4096 limit and of JavaScript string lengths. An invalid byte counts as one.
func UTF16Len(s string) int {
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

// RuneLen is the length of s in Unicode code points.
func RuneLen(s string) int { return utf8.RuneCountInString(s) }

// ByteLen is the length of s in bytes of UTF-8.
func ByteLen(s string) int { return len(s) }

// SplitText cuts s into chunks with measure(chunk) <= limit, for platforms
// that cap a message's length. It makes each chunk as long as it can while
// cutting at the best boundary that fits, in this order: a paragraph break
// (blank line), a line break, the end of a sentence (". ", "! ", "? ", "。"),
// whitespace, and only then between characters, where it keeps an emoji
// with its modifiers, variation selectors and ZWJ sequence, a flag's pair
// of regional indicators and a letter with its combining marks together
// when that fits.
//
// Chunks are substrings of s without whitespace at either end; only
// whitespace is dropped, at the cuts, so s is the chunks joined by the
// whitespace that lay between them. A chunk is over limit only when one
// code point alone measures more than limit. measure must not shrink as its
// argument grows; nil means RuneLen.
//
// Text that is empty or only whitespace yields no chunks; limit <= 0 means
// no limit, a single chunk.
func SplitText(s string, limit int, measure func(string) int) []string {
	if measure == nil {
		measure = RuneLen
	}
	start := splitSkipSpace(s, 0)
	if start == len(s) {
		return nil
	}
	if limit <= 0 {
		return []string{s[start:splitTrimEnd(s, start, len(s))]}
	}
	fits := func(a, b int) bool { return measure(s[a:b]) <= limit }
	var out []string
	for start < len(s) {
		end, next, ok := splitNext(s, start, fits, false, limit)
		if !ok {
			_, size := utf8.DecodeRuneInString(s[start:])
			end, next = start+size, start+size
		}
		out = append(out, s[start:end])
		start = splitSkipSpace(s, next)
	}
	return out
}

// SplitMarkdown cuts reply Markdown into chunks whose rendering,
// measure(render(ParseMarkdown(chunk))), is at most limit. It cuts where
// SplitText would, but never inside bold, italic, code, pre or a link
// unless that span alone is over the limit; then the span is cut at its own
// best boundaries and every piece keeps the span's formatting, so each
// chunk is Markdown that parses on its own with the same formatting.
//
// When the whole text fits it is returned as written, without whitespace at
// its ends; otherwise chunks are written back from the parsed tree, so their
// markers and escaping may differ from the input's. A chunk is over limit
// only when it shows a single code point, whose markup or link URL alone is
// too long. Markdown that shows nothing (empty, whitespace, an empty code
// block) yields no chunks. nil render means RenderPlain, nil measure
// RuneLen; measure must not shrink as its argument grows. limit <= 0 means
// no limit.
func SplitMarkdown(md string, limit int, render func([]Inline) string, measure func(string) int) []string {
	if render == nil {
		render = RenderPlain
	}
	if measure == nil {
		measure = RuneLen
	}
	src := strings.TrimSpace(md)
	nodes := ParseMarkdown(src)
	if len(nodes) == 0 {
		return nil
	}
	if limit <= 0 || measure(render(nodes)) <= limit {
		return []string{src}
	}
	// Measure what the chunk will parse to, which is the piece itself but
	// for the rare trees that mdSource has to simplify.
	fits := func(ns []Inline) bool {
		_, back := mdSource(ns)
		return measure(render(back)) <= limit
	}
	var out []string
	for _, piece := range splitInlines(nodes, fits, limit) {
		if s, _ := mdSource(piece); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// splitObject stands for a non-text node when a sequence of nodes is
// searched for boundaries: one character that is neither space nor
// sentence punctuation, so cuts fall before or after the node, not in it.
const splitObject = "\uFFFC"

// splitInlines cuts a sequence of nodes into pieces that each fit, cutting
// inside Text nodes or between nodes; a node that does not fit alone is cut
// by splitNode.
func splitInlines(nodes []Inline, fits func([]Inline) bool, hint int) [][]Inline {
	var t strings.Builder
	offs := make([]int, len(nodes)+1)
	for i, n := range nodes {
		offs[i] = t.Len()
		if n.Kind == InlineText {
			t.WriteString(n.Text)
		} else {
			t.WriteString(splitObject)
		}
	}
	offs[len(nodes)] = t.Len()
	ts := t.String()
	index := func(pos int) int { // the node holding ts[pos]
		return sort.Search(len(nodes), func(i int) bool { return offs[i+1] > pos })
	}
	slice := func(a, b int) []Inline {
		var out []Inline
		for i := index(a); i < len(nodes) && offs[i] < b; i++ {
			n := nodes[i]
			if n.Kind == InlineText {
				lo, hi := max(a, offs[i])-offs[i], min(b, offs[i+1])-offs[i]
				n = Inline{Text: n.Text[lo:hi]}
			}
			out = append(out, n)
		}
		return out
	}
	var out [][]Inline
	start := splitSkipSpace(ts, 0)
	for start < len(ts) {
		end, next, ok := splitNext(ts, start, func(a, b int) bool { return fits(slice(a, b)) }, false, hint)
		if !ok {
			if i := index(start); nodes[i].Kind != InlineText {
				out = append(out, splitNode(nodes[i], fits, hint)...)
				start = splitSkipSpace(ts, offs[i+1])
				continue
			}
			_, size := utf8.DecodeRuneInString(ts[start:])
			end, next = start+size, start+size
		}
		out = append(out, slice(start, end))
		start = splitSkipSpace(ts, next)
	}
	return out
}

// splitNode cuts one span that does not fit into pieces of the same kind.
func splitNode(n Inline, fits func([]Inline) bool, hint int) [][]Inline {
	var out [][]Inline
	switch n.Kind {
	case InlineBold, InlineItalic, InlineLink:
		wrap := func(cs []Inline) []Inline {
			w := n
			w.Children = cs
			return []Inline{w}
		}
		for _, cs := range splitInlines(n.Children, func(cs []Inline) bool { return fits(wrap(cs)) }, hint) {
			out = append(out, wrap(cs))
		}
	case InlineCode, InlinePre:
		// Pre keeps its whitespace: indentation matters in code.
		preserve := n.Kind == InlinePre
		t := n.Text
		at := func(a, b int) []Inline {
			w := n
			w.Text = t[a:b]
			return []Inline{w}
		}
		start := 0
		if !preserve {
			start = splitSkipSpace(t, 0)
		}
		for start < len(t) {
			end, next, ok := splitNext(t, start, func(a, b int) bool { return fits(at(a, b)) }, preserve, hint)
			if !ok {
				_, size := utf8.DecodeRuneInString(t[start:])
				end, next = start+size, start+size
			}
			out = append(out, at(start, end))
			start = next
			if !preserve {
				start = splitSkipSpace(t, start)
			}
		}
	default:
		out = append(out, []Inline{n})
	}
	return out
}

// The boundaries SplitText prefers, best first.
const (
	splitParagraph = iota
	splitLine
	splitSentence
	splitSpace
	splitGrapheme
	splitRune
	splitClasses
)

type splitCut struct{ end, next int }

// splitNext finds the longest chunk t[start:end] for which fits(start, end)
// holds, cutting at the best class of boundary that gives one. The next
// chunk starts at next, or after the whitespace there unless preserve is
// set. Without preserve the chunk has no whitespace at its end; with it, the
// chunk keeps every character but the newline it is cut at. ok is false if
// not even the first code point fits. hint is a length in bytes that
// probably fits, a starting point for bounding the search.
func splitNext(t string, start int, fits func(a, b int) bool, preserve bool, hint int) (end, next int, ok bool) {
	endAt := func(pos int) int {
		if preserve {
			return pos
		}
		return splitTrimEnd(t, start, pos)
	}
	// Every chunk that fits lies within t[start:window], found by doubling
	// so that a step costs in proportion to its chunk, not to all of t.
	window := len(t)
	for w := max(hint, 16); start+w < len(t); w *= 2 {
		pos := start + w
		for k := 0; k < utf8.UTFMax && pos > start+1 && !utf8.RuneStart(t[pos]); k++ {
			pos--
		}
		if !fits(start, endAt(pos)) {
			window = pos
			break
		}
	}
	if window == len(t) && fits(start, endAt(len(t))) {
		return endAt(len(t)), len(t), true
	}
	var cuts []splitCut
	for class := range splitClasses {
		if preserve && class == splitParagraph {
			continue
		}
		cuts = splitCandidates(cuts[:0], t, start, window, class, preserve)
		k := sort.Search(len(cuts), func(i int) bool { return !fits(start, cuts[i].end) })
		for k--; k >= 0; k-- { // normally the first try fits; more only for a measure that shrinks
			if fits(start, cuts[k].end) {
				return cuts[k].end, cuts[k].next, true
			}
		}
	}
	return 0, 0, false
}

// splitCandidates appends the cuts of one class in t(start:limit], in order.
func splitCandidates(cuts []splitCut, t string, start, limit, class int, preserve bool) []splitCut {
	add := func(end, next int) {
		if !preserve {
			end = splitTrimEnd(t, start, end)
		}
		if end <= start || end > limit {
			return
		}
		if n := len(cuts); n > 0 && cuts[n-1].end == end {
			cuts[n-1].next = next
			return
		}
		cuts = append(cuts, splitCut{end, next})
	}
	scanEnd := min(limit+1, len(t))
	switch class {
	case splitParagraph, splitLine:
		for i := start + 1; i < scanEnd; i++ {
			if t[i] != '\n' {
				continue
			}
			if class == splitParagraph {
				j := i + 1
				for j < len(t) && (t[j] == ' ' || t[j] == '\t' || t[j] == '\r') {
					j++
				}
				if j == len(t) || t[j] != '\n' {
					continue
				}
			}
			if preserve {
				add(i, i+1)
			} else {
				add(i, i)
			}
		}
	case splitSentence:
		for i := start + 1; i < scanEnd; i++ {
			switch t[i] {
			case '.', '!', '?':
				if i+1 < len(t) && (t[i+1] == ' ' || t[i+1] == '\t') {
					add(i+1, i+1)
				}
			case 0xe3, 0xef:
				for _, stop := range [...]string{"。", "！", "？"} {
					if strings.HasPrefix(t[i:], stop) {
						add(i+len(stop), i+len(stop))
					}
				}
			}
		}
	case splitSpace:
		prevSpace := true
		for i := start; i < scanEnd; {
			r, size := utf8.DecodeRuneInString(t[i:])
			space := unicode.IsSpace(r)
			if space && !prevSpace {
				add(i, i)
			}
			prevSpace = space
			i += size
		}
	case splitGrapheme, splitRune:
		var prev rune = -1
		ri := 0 // regional indicators in a row
		for i := start; i < scanEnd; {
			r, size := utf8.DecodeRuneInString(t[i:])
			if prev >= 0 && (class == splitRune || splitGraphemeBreak(prev, r, ri)) {
				add(i, i)
			}
			if r >= 0x1F1E6 && r <= 0x1F1FF {
				ri++
			} else {
				ri = 0
			}
			prev = r
			i += size
		}
		if scanEnd == len(t) {
			add(len(t), len(t))
		}
	}
	return cuts
}

// splitGraphemeBreak approximates Unicode's grapheme cluster rules where it
// is cheap: no break before a combining mark, variation selector, emoji
// modifier, tag or ZWJ, none after a ZWJ, none inside a flag's pair of
// regional indicators, none inside CR LF; ri counts the regional indicators
// just before r. It also keeps runs of backticks whole, so a piece of code
// can still be written as a code span.
func splitGraphemeBreak(prev, r rune, ri int) bool {
	switch {
	case prev == 0x200D, r == 0x200D,
		r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF,
		r >= 0x1F3FB && r <= 0x1F3FF, r >= 0xE0020 && r <= 0xE007F,
		prev == '\r' && r == '\n', prev == '`' && r == '`':
		return false
	case r >= 0x1F1E6 && r <= 0x1F1FF && ri%2 == 1:
		return false
	case r >= 0x300 && unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc):
		return false
	}
	return true
}

func splitSkipSpace(s string, i int) int {
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !unicode.IsSpace(r) {
			break
		}
		i += size
	}
	return i
}

// splitTrimEnd moves end back over whitespace, not past start.
func splitTrimEnd(s string, start, end int) int {
	for end > start {
		r, size := utf8.DecodeLastRuneInString(s[start:end])
		if !unicode.IsSpace(r) {
			break
		}
		end -= size
	}
	return end
}
