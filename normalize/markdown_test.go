package normalize

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// mdDump writes a tree compactly so table tests read like the tree:
// "text", b(...), i(...), code("x"), pre:lang("x"), link<url>(...).
func mdDump(nodes []Inline) string {
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		switch n.Kind {
		case InlineText:
			parts = append(parts, strconv.Quote(n.Text))
		case InlineBold:
			parts = append(parts, "b("+mdDump(n.Children)+")")
		case InlineItalic:
			parts = append(parts, "i("+mdDump(n.Children)+")")
		case InlineCode:
			parts = append(parts, "code("+strconv.Quote(n.Text)+")")
		case InlinePre:
			lang := ""
			if n.Lang != "" {
				lang = ":" + n.Lang
			}
			parts = append(parts, "pre"+lang+"("+strconv.Quote(n.Text)+")")
		case InlineLink:
			parts = append(parts, "link<"+n.URL+">("+mdDump(n.Children)+")")
		default:
			parts = append(parts, fmt.Sprintf("%v(%q %s)", n.Kind, n.Text, mdDump(n.Children)))
		}
	}
	return strings.Join(parts, " ")
}

// mdCheckTree checks the invariants documented on Inline.
func mdCheckTree(nodes []Inline, inBold, inItalic, inLink bool) error {
	for k, n := range nodes {
		if k > 0 {
			prev := nodes[k-1].Kind
			if prev == n.Kind && (n.Kind == InlineText || n.Kind == InlineBold || n.Kind == InlineItalic) {
				return fmt.Errorf("adjacent %v nodes", n.Kind)
			}
		}
		switch n.Kind {
		case InlineText, InlineCode, InlinePre:
			if n.Text == "" || n.Children != nil {
				return fmt.Errorf("%v node with empty text or children: %+v", n.Kind, n)
			}
			if n.Kind == InlineCode && mdHasBlankLine(n.Text) {
				return fmt.Errorf("code with a blank line: %q", n.Text)
			}
			if n.Lang != "" && !mdLangOK(n.Lang) {
				return fmt.Errorf("bad language %q", n.Lang)
			}
			continue
		case InlineBold:
			if inBold {
				return errors.New("bold inside bold")
			}
		case InlineItalic:
			if inItalic {
				return errors.New("italic inside italic")
			}
		case InlineLink:
			if inLink {
				return errors.New("link inside link")
			}
			if !mdURLOK(n.URL) {
				return fmt.Errorf("link to %q", n.URL)
			}
		default:
			return fmt.Errorf("unknown kind %d", n.Kind)
		}
		if len(n.Children) == 0 {
			return fmt.Errorf("%v without children", n.Kind)
		}
		err := mdCheckTree(n.Children, inBold || n.Kind == InlineBold, inItalic || n.Kind == InlineItalic,
			inLink || n.Kind == InlineLink)
		if err != nil {
			return err
		}
	}
	return nil
}

// mdCheckTags checks that every tag in RenderHTML output is closed in order.
// Text is escaped, so every '<' starts a tag.
func mdCheckTags(html string) error {
	var stack []string
	for rest := html; ; {
		i := strings.IndexByte(rest, '<')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '>')
		if j < 0 {
			return fmt.Errorf("unterminated tag in %q", html)
		}
		tag := rest[i+1 : i+j]
		rest = rest[i+j+1:]
		if name, ok := strings.CutPrefix(tag, "/"); ok {
			if len(stack) == 0 || stack[len(stack)-1] != name {
				return fmt.Errorf("</%s> closes %v in %q", name, stack, html)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		name, _, _ := strings.Cut(tag, " ")
		switch name {
		case "b", "i", "code", "pre", "a":
		default:
			return fmt.Errorf("unexpected tag <%s> in %q", tag, html)
		}
		stack = append(stack, name)
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %v in %q", stack, html)
	}
	return nil
}

func TestParseMarkdown(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain text stays text", "hello, world", `"hello, world"`},
		{"empty input has no nodes", "", ``},
		{"double asterisks make bold", "**bold**", `b("bold")`},
		{"double underscores make bold", "__bold__", `b("bold")`},
		{"single asterisks make italic", "an *italic* word", `"an " i("italic") " word"`},
		{"single underscores make italic", "an _italic_ word", `"an " i("italic") " word"`},
		{"underscores inside words are text", "snake_case and my_var_name", `"snake_case and my_var_name"`},
		{"underscore italic next to punctuation", "(_note_)", `"(" i("note") ")"`},
		{"intraword asterisks follow CommonMark", "un*believ*able", `"un" i("believ") "able"`},
		{"bold inside italic", "*a **b** c*", `i("a " b("b") " c")`},
		{"italic inside bold", "**a _b_ c**", `b("a " i("b") " c")`},
		{"triple asterisks make bold italic", "***both***", `i(b("both"))`},
		{"bold in bold is one bold", "**a __b__ c**", `b("a b c")`},
		{"adjacent italics merge", "*a*_b_", `i("ab")`},
		{"code keeps markers literal", "`a*b_c* [x](https://y.z)`", `code("a*b_c* [x](https://y.z)")`},
		{"code ignores backslashes", "`C:\\dir\\`", `code("C:\\dir\\")`},
		{"double backticks hold a backtick", "`` a`b ``", "code(\"a`b\")"},
		{"code strips one padding space", "` x `", `code("x")`},
		{"code inside bold", "**run `make`**", `b("run " code("make"))`},
		{"fence with a language", "```go\nfmt.Println(\"*hi*\")\n```", `pre:go("fmt.Println(\"*hi*\")")`},
		{"fence without a language keeps blank lines", "```\nline 1\n\n  line 2\n```", `pre("line 1\n\n  line 2")`},
		{"fence on one line", "```x = 1```", `pre("x = 1")`},
		{"fence whose first line is code", "```x = 1\ny = 2```", `pre("x = 1\ny = 2")`},
		{"fence inside text", "see:\n```sh\nls -l\n```\ndone", `"see:\n" pre:sh("ls -l") "\ndone"`},
		{"https link", "[docs](https://example.com/a_b?x=1&y=2)", `link<https://example.com/a_b?x=1&y=2>("docs")`},
		{"http link with formatted text", "[**big** _deal_](http://x.io)", `link<http://x.io>(b("big") " " i("deal"))`},
		{"mailto and tg links", "[mail](mailto:a@b.c) [me](tg://user?id=42)",
			`link<mailto:a@b.c>("mail") " " link<tg://user?id=42>("me")`},
		{"scheme is case-insensitive", "[x](HTTPS://X.IO)", `link<HTTPS://X.IO>("x")`},
		{"link url with parentheses", "[Go](https://en.wikipedia.org/wiki/Go_(language))",
			`link<https://en.wikipedia.org/wiki/Go_(language)>("Go")`},
		{"link url with escaped parenthesis", `[x](https://a.b/\))`, `link<https://a.b/)>("x")`},
		{"link url padded with spaces", "[x]( https://a.b )", `link<https://a.b>("x")`},
		{"empty link text shows the url", "[](https://a.b)", `link<https://a.b>("https://a.b")`},
		{"javascript link stays literal", "[click](javascript:alert(1))", `"[click](javascript:alert(1))"`},
		{"data link stays literal", "[x](data:text/html,<b>)", `"[x](data:text/html,<b>)"`},
		{"link without a scheme stays literal", "[site](example.com)", `"[site](example.com)"`},
		{"scheme alone is not a link", "[x](https://)", `"[x](https://)"`},
		{"url with a space is not a link", "[x](https://a.b c)", `"[x](https://a.b c)"`},
		{"formatting survives a rejected link", "[**x**](ftp://a.b)", `"[" b("x") "](ftp://a.b)"`},
		{"links do not nest", "[a [b](https://c.d)](https://e.f)", `"[a " link<https://c.d>("b") "](https://e.f)"`},
		{"brackets without a url are text", "[note] (later)", `"[note] (later)"`},
		{"escaped markers are text", "\\*no\\* \\_no\\_ \\`no\\` \\[no\\](https://x.y) \\\\",
			"\"*no* _no_ `no` [no](https://x.y) \\\\\""},
		{"any ascii punctuation can be escaped", `5\.00\!`, `"5.00!"`},
		{"backslash before a letter stays", `C:\Users\me`, `"C:\\Users\\me"`},
		{"trailing backslash stays", `end\`, `"end\\"`},
		{"unclosed bold is literal", "**bold", `"**bold"`},
		{"unclosed italic is literal", "*a and b", `"*a and b"`},
		{"unclosed code is literal", "`code", "\"`code\""},
		{"unclosed fence is literal", "```go\nx", "\"```go\\nx\""},
		{"unclosed link is literal", "[text](https://x.y", `"[text](https://x.y"`},
		{"lone closers are literal", "a** b] c)", `"a** b] c)"`},
		{"spaced asterisks are not emphasis", "a * b * c", `"a * b * c"`},
		{"bullet list is text", "* one\n* two", `"* one\n* two"`},
		{"mismatched runs keep the extra marker", "**a*", `"*" i("a")`},
		{"emphasis does not cross a blank line", "*a\n\nb*", `"*a\n\nb*"`},
		{"code does not cross a blank line", "`a\n\nb`", "\"`a\\n\\nb`\""},
		{"emphasis may cross a single newline", "*a\nb*", `i("a\nb")`},
		{"newlines are kept", "**a**\nb\r\nc", `b("a") "\nb\r\nc"`},
		{"html is text", "<script>alert('x')</script>", `"<script>alert('x')</script>"`},
		{"empty fence yields nothing", "```\n```", ``},
		{"utf-8 around markers", "¡*hola*! _ñandú_ **日本**", `"¡" i("hola") "! " i("ñandú") " " b("日本")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := ParseMarkdown(tt.in)
			if got := mdDump(nodes); got != tt.want {
				t.Errorf("ParseMarkdown(%q)\n got %s\nwant %s", tt.in, got, tt.want)
			}
			if err := mdCheckTree(nodes, false, false, false); err != nil {
				t.Errorf("tree invariant: %v", err)
			}
			if src, got := mdSource(nodes); !mdEqual(got, nodes) {
				t.Errorf("written back as %q, parses to %s", src, mdDump(got))
			}
		})
	}
}

func TestMarkdownToHTML(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"formatting becomes tags", "**a** _b_ `c`", "<b>a</b> <i>b</i> <code>c</code>"},
		{"nested formatting nests tags", "*a **b***", "<i>a <b>b</b></i>"},
		{"script is escaped", "<script>alert(1)</script> & co", "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"},
		{"entities are not decoded", "&amp; &lt;", "&amp;amp; &amp;lt;"},
		{"quotes in text stay", `say "hi"`, `say "hi"`},
		{"code is escaped", "`<b>&</b>`", "<code>&lt;b&gt;&amp;&lt;/b&gt;</code>"},
		{"pre with a language", "```html\n<p class=\"x\">&</p>\n```",
			`<pre><code class="language-html">&lt;p class="x"&gt;&amp;&lt;/p&gt;</code></pre>`},
		{"pre without a language", "```\na\n  b\n```", "<pre>a\n  b</pre>"},
		{"link attribute is escaped", `[q](https://x.y/?a=1&b="2"<>)`, `<a href="https://x.y/?a=1&amp;b=&quot;2&quot;&lt;&gt;">q</a>`},
		{"code inside a link is text", "[`cmd` now](https://x.y)", `<a href="https://x.y">cmd now</a>`},
		{"bad scheme is escaped text", `[x](javascript:alert("1"))`, `[x](javascript:alert("1"))`},
		{"newlines are kept", "a\n\n**b**\nc", "a\n\n<b>b</b>\nc"},
		{"empty input", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MarkdownToHTML(tt.in)
			if got != tt.want {
				t.Errorf("MarkdownToHTML(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if err := mdCheckTags(got); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestMarkdownToPlain(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"formatting is dropped", "**a** and _b_ and `c`", "a and b and c"},
		{"pre keeps its text", "```go\nx := 1\n```", "x := 1"},
		{"link shows text and url", "[docs](https://a.b/c)", "docs (https://a.b/c)"},
		{"link whose text is the url shows it once", "[https://a.b](https://a.b)", "https://a.b"},
		{"mail link to its own address shows it once", "[a@b.c](mailto:a@b.c)", "a@b.c"},
		{"formatted link text", "[**go** now](https://a.b)", "go now (https://a.b)"},
		{"escapes are resolved", `\*x\*`, "*x*"},
		{"html is not escaped", "<b>&", "<b>&"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MarkdownToPlain(tt.in); got != tt.want {
				t.Errorf("MarkdownToPlain(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// Connectors may build trees by hand; rendering stays safe for any tree.
func TestRenderHandBuiltTrees(t *testing.T) {
	text := func(s string) Inline { return Inline{Text: s} }
	tests := []struct {
		name      string
		nodes     []Inline
		html      string
		plainWant string
	}{
		{"unsafe link renders as its text",
			[]Inline{{Kind: InlineLink, URL: "javascript:alert(1)", Children: []Inline{text("x")}}},
			"x", "x (javascript:alert(1))"},
		{"link inside link keeps one anchor",
			[]Inline{{Kind: InlineLink, URL: "https://a.b", Children: []Inline{
				{Kind: InlineLink, URL: "https://c.d", Children: []Inline{text("in")}}}}},
			`<a href="https://a.b">in</a>`, "in (https://c.d) (https://a.b)"},
		{"pre with an unsafe language drops the class",
			[]Inline{{Kind: InlinePre, Lang: `x" onclick="y`, Text: "code"}},
			"<pre>code</pre>", "code"},
		{"unknown kind keeps its text",
			[]Inline{{Kind: InlineKind(99), Text: "a<", Children: []Inline{text("b")}}},
			"a&lt;b", "a<b"},
		{"link without text shows its url",
			[]Inline{{Kind: InlineLink, URL: "https://a.b"}},
			`<a href="https://a.b">https://a.b</a>`, "https://a.b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RenderHTML(tt.nodes); got != tt.html {
				t.Errorf("RenderHTML = %q, want %q", got, tt.html)
			}
			if got := RenderPlain(tt.nodes); got != tt.plainWant {
				t.Errorf("RenderPlain = %q, want %q", got, tt.plainWant)
			}
		})
	}
}

func TestInlineKindString(t *testing.T) {
	if got := InlineLink.String(); got != "link" {
		t.Errorf("InlineLink.String() = %q", got)
	}
	if got := InlineKind(200).String(); got != "unknown" {
		t.Errorf("InlineKind(200).String() = %q", got)
	}
}

func mdFuzzSeeds() []string {
	return []string{
		"", "plain", "**bold** and __bold__", "*it* _it_ snake_case_name", "***x***", "**_x_**",
		"*a **b** c*", "**a *b* c**", "`code *x*`", "`` a`b ``", "```go\nfunc(){}\n```", "```\n\n```",
		"[x](https://a.b/c_(d)) [y](javascript:alert(1)) [z](tg://user?id=1) [](mailto:a@b.c)",
		"[a [b](https://c)](https://d)", "\\*esc\\* \\\\ \\", "<script>&\"'</script>", "*a\n\nb*",
		"**a*", "*a**", "a**b**c", "__init__.py", "2*3*4", "* list\n* items", "_*_*_*", "[*](http://x)",
		"`a``b`", "***a**b*", "*a***b**", "**a***b*", "*a*_b_", "_a_*b*", "[`x`](https://y)",
		"👨‍👩‍👧 **日本語** _ñ_", "\xff*\xfe*", "a\r\n\r\n*b*", "```a``b`c```", "``` x ```",
	}
}

func FuzzParseMarkdown(f *testing.F) {
	for _, s := range mdFuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nodes := ParseMarkdown(s)
		if err := mdCheckTree(nodes, false, false, false); err != nil {
			t.Fatalf("ParseMarkdown(%q) = %s: %v", s, mdDump(nodes), err)
		}
		html := RenderHTML(nodes)
		if err := mdCheckTags(html); err != nil {
			t.Fatalf("RenderHTML of %q: %v", s, err)
		}
		_ = RenderPlain(nodes)
		// Written back, the text survives; so does the formatting, but for
		// rare trees that mdSource has to simplify.
		src, back := mdSource(nodes)
		if RenderPlain(back) != RenderPlain(nodes) || !mdEqual(back, ParseMarkdown(src)) {
			t.Fatalf("%q parses to %s\nwritten back as %q, which parses to %s", s, mdDump(nodes), src, mdDump(back))
		}
	})
}
