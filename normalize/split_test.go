package normalize

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// splitCheck checks SplitText's promises: chunks are trimmed and within
// the limit (but for a lone code point wider than it), and s is exactly the
// chunks with whitespace between them.
func splitCheck(s string, chunks []string, limit int, measure func(string) int) error {
	pos := 0
	skip := func() {
		for pos < len(s) {
			r, size := utf8.DecodeRuneInString(s[pos:])
			if !unicode.IsSpace(r) {
				break
			}
			pos += size
		}
	}
	skip()
	for i, c := range chunks {
		if c == "" || strings.TrimSpace(c) != c {
			return fmt.Errorf("chunk %d %q is empty or untrimmed", i, c)
		}
		if limit > 0 && measure(c) > limit && RuneLen(c) > 1 {
			return fmt.Errorf("chunk %d %q measures %d, over %d", i, c, measure(c), limit)
		}
		if !strings.HasPrefix(s[pos:], c) {
			return fmt.Errorf("chunk %d %q is not the text at %d: %q", i, c, pos, s[pos:])
		}
		pos += len(c)
		skip()
	}
	if pos != len(s) {
		return fmt.Errorf("text lost after chunk %d: %q", len(chunks), s[pos:])
	}
	return nil
}

func TestLengthMeasures(t *testing.T) {
	tests := []struct {
		name                string
		in                  string
		bytes, runes, utf16 int
	}{
		{"ascii", "hello", 5, 5, 5},
		{"latin accents", "ñandú", 7, 5, 5},
		{"cjk", "日本語", 9, 3, 3},
		{"astral characters take two utf-16 units", "𝄞😀", 8, 2, 4},
		{"zwj family", "👨‍👩‍👧", 18, 5, 8},
		{"invalid byte counts one", "a\xffb", 3, 3, 3},
		{"empty", "", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ByteLen(tt.in); got != tt.bytes {
				t.Errorf("ByteLen = %d, want %d", got, tt.bytes)
			}
			if got := RuneLen(tt.in); got != tt.runes {
				t.Errorf("RuneLen = %d, want %d", got, tt.runes)
			}
			if got := UTF16Len(tt.in); got != tt.utf16 {
				t.Errorf("UTF16Len = %d, want %d", got, tt.utf16)
			}
		})
	}
}

func TestSplitText(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		limit   int
		measure func(string) int
		want    []string
	}{
		{"empty text gives no chunks", "", 10, RuneLen, nil},
		{"whitespace gives no chunks", " \n\t\n ", 10, RuneLen, nil},
		{"text within the limit is one trimmed chunk", "  hello  \n", 10, RuneLen, []string{"hello"}},
		{"zero limit means one chunk", " a b c ", 0, RuneLen, []string{"a b c"}},
		{"negative limit means one chunk", "a b c", -1, RuneLen, []string{"a b c"}},
		{"nil measure counts runes", "ñññ ñññ", 3, nil, []string{"ñññ", "ñññ"}},
		{"paragraph break preferred over a longer cut at a line", "aaa aaa.\n\nbbb bbb.\nccc ccc.", 20, RuneLen,
			[]string{"aaa aaa.", "bbb bbb.\nccc ccc."}},
		{"several paragraphs fill a chunk", "p1.\n\np2.\n\np3.\n\np4.", 9, RuneLen,
			[]string{"p1.\n\np2.", "p3.\n\np4."}},
		{"blank line with spaces is a paragraph break", "one two\n  \nthree", 10, RuneLen, []string{"one two", "three"}},
		{"line break preferred over sentence end", "One. Two.\nThree four five.", 12, RuneLen,
			[]string{"One. Two.", "Three four", "five."}},
		{"sentence end preferred over space", "This is one. This is two.", 20, RuneLen,
			[]string{"This is one.", "This is two."}},
		{"question and exclamation end sentences", "Really? Yes! Good.", 10, RuneLen,
			[]string{"Really?", "Yes! Good."}},
		{"words when no sentence fits", "alpha beta gamma delta", 11, RuneLen,
			[]string{"alpha beta", "gamma delta"}},
		{"tabs and runs of spaces are dropped at the cut", "alpha \t  beta", 7, RuneLen, []string{"alpha", "beta"}},
		{"hard cut inside a long word", "abcdefghij", 4, RuneLen, []string{"abcd", "efgh", "ij"}},
		{"hard cut only for the long word", "a abcdefgh b", 4, RuneLen, []string{"a", "abcd", "efgh", "b"}},
		{"ideographic full stop ends a sentence", "今日は晴れです。明日は雨です。", 10, RuneLen,
			[]string{"今日は晴れです。", "明日は雨です。"}},
		{"cjk without punctuation is cut between characters", "日本語日本語日本語", 4, RuneLen,
			[]string{"日本語日", "本語日本", "語"}},
		{"zwj family stays whole", "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", 8, RuneLen, []string{"👨‍👩‍👧‍👦", "👨‍👩‍👧‍👦"}},
		{"flags stay whole", "🇩🇪🇫🇷🇮🇹", 3, RuneLen, []string{"🇩🇪", "🇫🇷", "🇮🇹"}},
		{"variation selector stays with its emoji", "❤️❤️❤️", 3, RuneLen, []string{"❤️", "❤️", "❤️"}},
		{"skin tone stays with its emoji", "👍🏽👍🏽", 3, RuneLen, []string{"👍🏽", "👍🏽"}},
		{"combining accent stays with its letter", "e\u0301e\u0301e\u0301", 3, RuneLen,
			[]string{"e\u0301", "e\u0301", "e\u0301"}},
		{"emoji wider than the limit is cut between code points", "👨‍👩‍👧", 2, RuneLen,
			[]string{"👨\u200d", "👩\u200d", "👧"}},
		{"utf-16 measure counts astral characters twice", "𝄞𝄞𝄞 abc", 4, UTF16Len,
			[]string{"𝄞𝄞", "𝄞", "abc"}},
		{"utf-16 measure never splits a surrogate pair", "😀😀😀", 3, UTF16Len, []string{"😀", "😀", "😀"}},
		{"byte measure never splits a rune", "ééé", 3, ByteLen, []string{"é", "é", "é"}},
		{"code point wider than the limit is a chunk of its own", "a😀b", 1, UTF16Len, []string{"a", "😀", "b"}},
		{"crlf line breaks", "one\r\ntwo\r\nthree", 8, RuneLen, []string{"one\r\ntwo", "three"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitText(tt.in, tt.limit, tt.measure)
			if !slices.Equal(got, tt.want) {
				t.Errorf("SplitText(%q, %d)\n got %q\nwant %q", tt.in, tt.limit, got, tt.want)
			}
			measure := tt.measure
			if measure == nil {
				measure = RuneLen
			}
			if err := splitCheck(tt.in, got, tt.limit, measure); err != nil {
				t.Error(err)
			}
		})
	}
}

// splitLorem is deterministic prose: paragraphs of sentences of words,
// with some accents, CJK and emoji.
func splitLorem(rng *rand.Rand, paragraphs int) string {
	words := []string{"parley", "gateway", "message", "order", "ships", "today", "señor", "naïve",
		"日本語", "über", "😀", "👍🏽", "🇩🇪", "reply", "conversation", "delivery", "𝄞"}
	var b strings.Builder
	for p := range paragraphs {
		if p > 0 {
			b.WriteString("\n\n")
		}
		for s := range 3 + rng.IntN(6) {
			if s > 0 {
				b.WriteString(" ")
			}
			for w := range 5 + rng.IntN(12) {
				if w > 0 {
					b.WriteString(" ")
				}
				b.WriteString(words[rng.IntN(len(words))])
			}
			b.WriteString([]string{".", "!", "?"}[rng.IntN(3)])
		}
	}
	return b.String()
}

func TestSplitTextTelegramLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var text string
	for UTF16Len(text) < 10000 {
		text = splitLorem(rng, 40)
	}
	chunks := SplitText(text, 4096, UTF16Len)
	if err := splitCheck(text, chunks, 4096, UTF16Len); err != nil {
		t.Fatal(err)
	}
	if want := (UTF16Len(text) + 4095) / 4096; len(chunks) < want || len(chunks) > want+1 {
		t.Errorf("%d chunks for %d units, want about %d", len(chunks), UTF16Len(text), want)
	}
	// Paragraphs are short, so every cut is at a paragraph break.
	pos := 0
	for _, c := range chunks[:len(chunks)-1] {
		pos = strings.Index(text[pos:], c) + pos + len(c)
		if !strings.HasPrefix(text[pos:], "\n\n") {
			t.Errorf("chunk ends mid-paragraph: ...%q", c[max(0, len(c)-30):])
		}
	}
}

func TestSplitTextKeepsEveryWord(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pieces := []string{"a", "word", "longerwordthanmost", "ñ", "日本語", "😀", "👨‍👩‍👧", "🇫🇷", "❤️", "e\u0301",
		"𝄞", " ", "  ", "\t", "\n", "\n\n", " \n \n", ". ", "! ", "? ", "。", "\u00a0", "\u3000", "\xff"}
	measures := []func(string) int{RuneLen, UTF16Len, ByteLen}
	for i := range 3000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s, limit, measure := b.String(), rng.IntN(40)-2, measures[i%3]
		chunks := SplitText(s, limit, measure)
		if err := splitCheck(s, chunks, limit, measure); err != nil {
			t.Fatalf("SplitText(%q, %d, measure %d): %v", s, limit, i%3, err)
		}
	}
}

func FuzzSplitText(f *testing.F) {
	f.Add("Hello world. This is a test.\n\nNew paragraph here!", uint16(12), uint8(0))
	f.Add("今日は晴れです。明日は雨です。", uint16(5), uint8(1))
	f.Add("👨‍👩‍👧‍👦🇩🇪❤️e\u0301𝄞😀", uint16(3), uint8(1))
	f.Add("a\xffb\xfe\xfd c", uint16(1), uint8(2))
	f.Add("  \n\n  ", uint16(4), uint8(0))
	f.Add("one\r\ntwo\r\n\r\nthree", uint16(6), uint8(0))
	f.Add(strings.Repeat("x", 100), uint16(7), uint8(2))
	f.Fuzz(func(t *testing.T, s string, limit uint16, which uint8) {
		measure := []func(string) int{RuneLen, UTF16Len, ByteLen}[which%3]
		l := int(limit%300) - 1
		chunks := SplitText(s, l, measure)
		if err := splitCheck(s, chunks, l, measure); err != nil {
			t.Fatal(err)
		}
	})
}

// splitVisible is the text a reader sees: Text, Code and Pre, and link
// text without the URL.
func splitVisible(nodes []Inline) string {
	var b strings.Builder
	var walk func([]Inline)
	walk = func(ns []Inline) {
		for _, n := range ns {
			b.WriteString(n.Text)
			walk(n.Children)
		}
	}
	walk(nodes)
	return b.String()
}

func splitNoSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// splitCheckMarkdown checks SplitMarkdown's promises: every chunk renders
// within the limit (but for a lone code point that cannot), HTML
// renderings are balanced, and no visible text is lost or reordered.
func splitCheckMarkdown(md string, chunks []string, limit int, render func([]Inline) string, measure func(string) int) error {
	var all strings.Builder
	for i, c := range chunks {
		if c == "" || strings.TrimSpace(c) != c {
			return fmt.Errorf("chunk %d %q is empty or untrimmed", i, c)
		}
		nodes := ParseMarkdown(c)
		out := render(nodes)
		if limit > 0 && measure(out) > limit && RuneLen(strings.TrimSpace(splitVisible(nodes))) > 1 {
			return fmt.Errorf("chunk %d %q renders as %q, %d over %d", i, c, out, measure(out), limit)
		}
		if err := mdCheckTags(RenderHTML(nodes)); err != nil {
			return fmt.Errorf("chunk %d: %v", i, err)
		}
		all.WriteString(splitNoSpace(splitVisible(nodes)))
	}
	if got, want := all.String(), splitNoSpace(splitVisible(ParseMarkdown(md))); got != want {
		return fmt.Errorf("visible text changed:\n got %q\nwant %q", got, want)
	}
	return nil
}

func TestSplitMarkdown(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		limit  int
		render func([]Inline) string
		want   []string
	}{
		{"empty gives no chunks", " \n ", 10, RenderPlain, nil},
		{"empty code block gives no chunks", "```\n```", 10, RenderPlain, nil},
		{"text that fits is returned as written", "  Hello **world** \\_x\\_\n", 100, RenderPlain,
			[]string{"Hello **world** \\_x\\_"}},
		{"zero limit returns the text as written", "**a** b", 0, RenderPlain, []string{"**a** b"}},
		{"cuts between spans, not inside them", "**bold one** then *italic two* end", 20, RenderPlain,
			[]string{"**bold one** then", "*italic two* end"}},
		{"paragraph break preferred", "Para **one** here.\n\nPara _two_ here.", 25, RenderPlain,
			[]string{"Para **one** here.", "Para *two* here."}},
		{"sentence end after a span", "Done **now**. Next step here", 15, RenderPlain,
			[]string{"Done **now**.", "Next step here"}},
		{"long bold is cut and each piece stays bold", "**aaa bbb ccc ddd**", 8, RenderPlain,
			[]string{"**aaa bbb**", "**ccc ddd**"}},
		{"nested spans are cut inside the innermost that is too long", "*x **aaa bbb ccc** y*", 9, RenderPlain,
			[]string{"*x*", "_**aaa bbb**_", "_**ccc**_", "*y*"}},
		{"long link keeps its target in every piece", "[aaa bbb ccc](https://a.b)", 20, RenderPlain,
			[]string{"[aaa](https://a.b)", "[bbb](https://a.b)", "[ccc](https://a.b)"}},
		{"pre is cut at lines and keeps its language", "```go\nline one\nline two\nline three\n```", 20, RenderPlain,
			[]string{"```go\nline one\nline two\n```", "```go\nline three\n```"}},
		{"pre keeps indentation", "```\nif x {\n    y()\n}\n```", 14, RenderPlain,
			[]string{"```\nif x {\n    y()\n```", "```\n}\n```"}},
		{"code is cut at spaces", "`aaa bbb ccc`", 8, RenderPlain, []string{"`aaa bbb`", "`ccc`"}},
		{"html tags count toward the limit", "**ab** cd", 10, RenderHTML, []string{"**ab**", "cd"}},
		{"escaped markers stay escaped", "a\\*b c\\_d e\\`f", 4, RenderPlain,
			[]string{"a\\*b", "c\\_d", "e\\`f"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SplitMarkdown(tt.in, tt.limit, tt.render, RuneLen)
			if !slices.Equal(got, tt.want) {
				t.Errorf("SplitMarkdown(%q, %d)\n got %q\nwant %q", tt.in, tt.limit, got, tt.want)
			}
			if err := splitCheckMarkdown(tt.in, got, tt.limit, tt.render, RuneLen); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSplitMarkdownTelegramLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	spans := []string{"**order #%d** ships", "_today_ at %d", "`track %d`", "[tracking %d](https://x.io/t?id=1&a=b)",
		"plain words %d here", "snake_case_%d", "price 5*%d", "<b>%d</b> & co"}
	var b strings.Builder
	for i := 0; UTF16Len(b.String()) < 10000; i++ {
		switch {
		case i%40 == 39:
			b.WriteString("\n\n")
		case i%97 == 0:
			fmt.Fprintf(&b, "\n```go\nfunc f%d() {\n\treturn\n}\n```\n", i)
		default:
			fmt.Fprintf(&b, spans[rng.IntN(len(spans))]+"%s", i, []string{" ", ". ", "\n", "! 😀 "}[rng.IntN(4)])
		}
	}
	md := b.String()
	for _, render := range []struct {
		name string
		fn   func([]Inline) string
	}{{"html", RenderHTML}, {"plain", RenderPlain}} {
		t.Run(render.name, func(t *testing.T) {
			chunks := SplitMarkdown(md, 4096, render.fn, UTF16Len)
			if len(chunks) < 3 {
				t.Errorf("%d chunks, want at least 3", len(chunks))
			}
			if err := splitCheckMarkdown(md, chunks, 4096, render.fn, UTF16Len); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSplitMarkdownKeepsEveryWord(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"word", "ñandú", "日本語", "😀", "👨‍👩‍👧", " ", " ", "\n", "\n\n", ". ", "**", "*", "_", "__",
		"`", "```", "```go\n", "[", "](https://a.b/c)", "](javascript:x)", "\\*", "\\", "<", "&", "snake_case"}
	renders := []func([]Inline) string{RenderPlain, RenderHTML}
	for i := range 2000 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		md, limit, render := b.String(), 1+rng.IntN(40), renders[i%2]
		chunks := SplitMarkdown(md, limit, render, RuneLen)
		if err := splitCheckMarkdown(md, chunks, limit, render, RuneLen); err != nil {
			t.Fatalf("SplitMarkdown(%q, %d): %v", md, limit, err)
		}
	}
}

func FuzzSplitMarkdown(f *testing.F) {
	for _, s := range mdFuzzSeeds() {
		f.Add(s, uint16(8), false)
	}
	f.Add("**bold one** then *italic two* end.\n\nNext [link text](https://a.b) `code`", uint16(12), true)
	f.Fuzz(func(t *testing.T, md string, limit uint16, html bool) {
		// Reply text arrives as JSON and so is valid UTF-8. Invalid bytes on
		// either side of a marker would only join into other characters
		// when this test concatenates the chunks' text.
		md = strings.ToValidUTF8(md, "\uFFFD")
		render := RenderPlain
		if html {
			render = RenderHTML
		}
		l := int(limit % 200)
		chunks := SplitMarkdown(md, l, render, UTF16Len)
		if err := splitCheckMarkdown(md, chunks, l, render, UTF16Len); err != nil {
			t.Fatal(err)
		}
	})
}
