package telegramsim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-telegram/bot"
	"github.com/go-telegram/bot/models"

	"github.com/parley-gateway/parley/connectors/telegram/telegramsim"
)

const testToken = "123456:TEST-TOKEN"

var alice = models.User{ID: 1001, FirstName: "Alice", Username: "alice"}

// noLimits switches every flood limit off, for tests about something else.
func noLimits() telegramsim.Options {
	return telegramsim.Options{
		PerChatInterval: telegramsim.Disabled,
		GlobalPerSecond: telegramsim.Disabled,
		GroupPerMinute:  telegramsim.Disabled,
	}
}

func startSim(t *testing.T, opts telegramsim.Options) *telegramsim.Server {
	t.Helper()
	if opts.Token == "" {
		opts.Token = testToken
	}
	srv, err := telegramsim.New(opts).Start(t.Context())
	if err != nil {
		t.Fatalf("starting simulator: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing simulator: %v", err)
		}
	})
	return srv
}

// newBot is the real SDK client pointed at the simulator; it sends multipart requests.
func newBot(t *testing.T, srv *telegramsim.Server) *bot.Bot {
	t.Helper()
	b, err := bot.New(srv.Token(), bot.WithServerURL(srv.URL), bot.WithSkipGetMe())
	if err != nil {
		t.Fatalf("creating bot: %v", err)
	}
	return b
}

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// apiResponse is the Bot API envelope, decoded independently of the SDK.
type apiResponse struct {
	OK          bool            `json:"ok"`
	Result      json.RawMessage `json:"result"`
	ErrorCode   int             `json:"error_code"`
	Description string          `json:"description"`
	Parameters  *struct {
		RetryAfter      int   `json:"retry_after"`
		MigrateToChatID int64 `json:"migrate_to_chat_id"`
	} `json:"parameters"`
}

// call posts params as JSON and decodes the envelope.
func call(ctx context.Context, t *testing.T, base, token, method string, params any) (int, apiResponse) {
	t.Helper()
	var body io.Reader = http.NoBody
	if params != nil {
		data, err := json.Marshal(params)
		if err != nil {
			t.Fatalf("encoding params: %v", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/bot"+token+"/"+method, body)
	if err != nil {
		t.Fatalf("building request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, apiResponse) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading answer: %v", err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json (body %s)", ct, data)
	}
	var r apiResponse
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("decoding answer %s: %v", data, err)
	}
	if !r.OK && r.ErrorCode != resp.StatusCode {
		t.Fatalf("error_code %d differs from HTTP status %d", r.ErrorCode, resp.StatusCode)
	}
	return resp.StatusCode, r
}

func getUpdates(ctx context.Context, t *testing.T, srv *telegramsim.Server, params map[string]any) []models.Update {
	t.Helper()
	status, r := call(ctx, t, srv.URL, srv.Token(), "getUpdates", params)
	if status != http.StatusOK {
		t.Fatalf("getUpdates: %d %s", status, r.Description)
	}
	var us []models.Update
	if err := json.Unmarshal(r.Result, &us); err != nil {
		t.Fatalf("decoding updates %s: %v", r.Result, err)
	}
	return us
}

func updateIDs(us []models.Update) []int64 {
	ids := make([]int64, len(us))
	for i, u := range us {
		ids[i] = u.ID
	}
	return ids
}

func wantDescription(t *testing.T, err error, sentinel error, desc string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error = %v, want %v", err, sentinel)
	}
	if !strings.Contains(err.Error(), desc) {
		t.Fatalf("error = %q, want it to contain %q", err, desc)
	}
}

// fakeClock drives rate limits deterministically.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// --- identity and routing ---------------------------------------------------------------------------

func TestGetMeThroughSDKConstructor(t *testing.T) {
	srv := startSim(t, telegramsim.Options{Token: "987654:ABC-def", BotUsername: "parley_test_bot"})
	b, err := bot.New(srv.Token(), bot.WithServerURL(srv.URL)) // calls getMe
	if err != nil {
		t.Fatalf("bot.New: %v", err)
	}
	me, err := b.GetMe(timeout(t, 5*time.Second))
	if err != nil {
		t.Fatalf("GetMe: %v", err)
	}
	if me.ID != 987654 || !me.IsBot || me.Username != "parley_test_bot" {
		t.Fatalf("getMe = %+v, want id 987654, is_bot, username parley_test_bot", me)
	}
	if got := srv.Requests("getMe"); got != 2 {
		t.Fatalf("Requests(getMe) = %d, want 2", got)
	}
}

func TestRouting(t *testing.T) {
	srv := startSim(t, noLimits())
	ctx := timeout(t, 10*time.Second)
	tests := []struct {
		name       string
		token      string
		method     string
		wantStatus int
		wantDesc   string
	}{
		{"unknown token is unauthorized", "42:WRONG", "getMe", 401, telegramsim.DescUnauthorized},
		{"unknown method is not found", testToken, "sendCarrierPigeon", 404, telegramsim.DescNotFound},
		{"method names ignore case", testToken, "GETME", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, r := call(ctx, t, srv.URL, tt.token, tt.method, nil)
			if status != tt.wantStatus || r.Description != tt.wantDesc {
				t.Fatalf("got %d %q, want %d %q", status, r.Description, tt.wantStatus, tt.wantDesc)
			}
		})
	}

	t.Run("SDK sees a wrong token as ErrorUnauthorized", func(t *testing.T) {
		b, err := bot.New("42:WRONG", bot.WithServerURL(srv.URL), bot.WithSkipGetMe())
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 1, Text: "hi"})
		wantDescription(t, err, bot.ErrorUnauthorized, "Unauthorized")
	})
}

// --- sendMessage ------------------------------------------------------------------------------------

func TestSendMessage(t *testing.T) {
	keyboard := &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{
		{{Text: "Yes", CallbackData: "yes"}, {Text: "Docs", URL: "https://example.com"}},
	}}
	tests := []struct {
		name   string
		setup  func(sim *telegramsim.Server)
		params bot.SendMessageParams
		check  func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error)
	}{
		{
			name:   "plain text is sent and recorded",
			params: bot.SendMessageParams{ChatID: 42, Text: "hello"},
			check: func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if msg.ID != 1 || msg.Text != "hello" || msg.Chat.ID != 42 || msg.Chat.Type != models.ChatTypePrivate || msg.From == nil || !msg.From.IsBot {
					t.Fatalf("message = %+v", msg)
				}
				sent := sim.SentTo(42)
				if len(sent) != 1 || sent[0].Method != "sendMessage" || sent[0].Text != "hello" || sent[0].MessageID != 1 {
					t.Fatalf("recorded %+v", sent)
				}
			},
		},
		{
			name:   "HTML is parsed into entities with UTF-16 offsets",
			params: bot.SendMessageParams{ChatID: 42, Text: `😀 <b>bold</b> <a href="https://x.y/?a=1&amp;b=2">link</a> &lt;3`, ParseMode: models.ParseModeHTML},
			check: func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if msg.Text != "😀 bold link <3" {
					t.Fatalf("text = %q", msg.Text)
				}
				want := []models.MessageEntity{
					{Type: models.MessageEntityTypeBold, Offset: 3, Length: 4},
					{Type: models.MessageEntityTypeTextLink, Offset: 8, Length: 4, URL: "https://x.y/?a=1&b=2"},
				}
				if fmt.Sprint(msg.Entities) != fmt.Sprint(want) {
					t.Fatalf("entities = %+v, want %+v", msg.Entities, want)
				}
				if sent := sim.Sent(); sent[0].ParseMode != "HTML" || !strings.Contains(sent[0].Text, "<b>") {
					t.Fatalf("recorded %+v, want the text as sent", sent[0])
				}
			},
		},
		{
			name:   "HTML tags and entities do not count towards 4096",
			params: bot.SendMessageParams{ChatID: 42, Text: "<b>" + strings.Repeat("&lt;", 4096) + "</b>", ParseMode: models.ParseModeHTML},
			check: func(t *testing.T, _ *telegramsim.Server, msg *models.Message, err error) {
				if err != nil || len(msg.Text) != 4096 {
					t.Fatalf("err = %v, text length %d", err, len(msg.Text))
				}
			},
		},
		{
			name:   "4097 characters are too long",
			params: bot.SendMessageParams{ChatID: 42, Text: strings.Repeat("a", 4097)},
			check:  wantBadRequest(telegramsim.DescMessageTooLong),
		},
		{
			name:   "length counts UTF-16 units: 2049 emoji are 4098",
			params: bot.SendMessageParams{ChatID: 42, Text: strings.Repeat("😀", 2049)},
			check:  wantBadRequest(telegramsim.DescMessageTooLong),
		},
		{
			name:   "2048 emoji fit",
			params: bot.SendMessageParams{ChatID: 42, Text: strings.Repeat("😀", 2048)},
			check:  wantOK,
		},
		{
			name:   "empty text is refused",
			params: bot.SendMessageParams{ChatID: 42, Text: ""},
			check:  wantBadRequest(telegramsim.DescTextEmpty),
		},
		{
			name:   "text that is only markup is empty",
			params: bot.SendMessageParams{ChatID: 42, Text: "<b> </b>", ParseMode: models.ParseModeHTML},
			check:  wantBadRequest(telegramsim.DescTextEmpty),
		},
		{
			name:   "unsupported HTML tag cannot be parsed",
			params: bot.SendMessageParams{ChatID: 42, Text: "a<br>b", ParseMode: models.ParseModeHTML},
			check:  wantBadRequest(`Bad Request: can't parse entities: Unsupported start tag "br" at byte offset 1`),
		},
		{
			name:   "unclosed HTML tag cannot be parsed",
			params: bot.SendMessageParams{ChatID: 42, Text: "<b>bold", ParseMode: models.ParseModeHTML},
			check:  wantBadRequest(`Bad Request: can't parse entities: Can't find end tag corresponding to start tag "b"`),
		},
		{
			name:   "misnested HTML tags cannot be parsed",
			params: bot.SendMessageParams{ChatID: 42, Text: "<b><i>x</b></i>", ParseMode: models.ParseModeHTML},
			check:  wantBadRequest(`Unmatched end tag at byte offset 7, expected "</i>", found "</b>"`),
		},
		{
			name:   "span needs the spoiler class",
			params: bot.SendMessageParams{ChatID: 42, Text: `<span class="x">x</span>`, ParseMode: models.ParseModeHTML},
			check:  wantBadRequest(`Tag "span" must have class "tg-spoiler"`),
		},
		{
			name: "every supported HTML tag parses",
			params: bot.SendMessageParams{ChatID: 42, ParseMode: models.ParseModeHTML, Text: `<b>b</b><strong>s</strong><i>i</i><em>e</em><u>u</u><ins>n</ins>` +
				`<s>s</s><strike>k</strike><del>d</del><span class="tg-spoiler">p</span><tg-spoiler>t</tg-spoiler>` +
				`<a href="https://e.x">a</a><code>c</code><pre><code class="language-go">x := 1</code></pre><blockquote expandable>q</blockquote>`},
			check: func(t *testing.T, _ *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if len(msg.Entities) != 15 {
					t.Fatalf("entities = %+v, want 15", msg.Entities)
				}
				if pre := msg.Entities[13]; pre.Type != models.MessageEntityTypePre || pre.Language != "go" {
					t.Fatalf("pre entity = %+v, want language go", pre)
				}
			},
		},
		{
			name:   "MarkdownV2 needs reserved characters escaped",
			params: bot.SendMessageParams{ChatID: 42, Text: "*Hi* there.", ParseMode: models.ParseModeMarkdown},
			check:  wantBadRequest(`Character '.' is reserved and must be escaped with the preceding '\'`),
		},
		{
			name:   "escaped MarkdownV2 parses",
			params: bot.SendMessageParams{ChatID: 42, Text: `*Hi* __there__\. [site](https://e.x/a\)b)`, ParseMode: models.ParseModeMarkdown},
			check: func(t *testing.T, _ *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if msg.Text != "Hi there. site" || len(msg.Entities) != 3 || msg.Entities[2].URL != "https://e.x/a)b" {
					t.Fatalf("message = %q %+v", msg.Text, msg.Entities)
				}
			},
		},
		{
			name:   "unknown parse mode is refused",
			params: bot.SendMessageParams{ChatID: 42, Text: "x", ParseMode: "BBCode"},
			check:  wantBadRequest("Bad Request: unsupported parse_mode"),
		},
		{
			name:   "blocked user is forbidden",
			setup:  func(sim *telegramsim.Server) { sim.Block(42) },
			params: bot.SendMessageParams{ChatID: 42, Text: "hello"},
			check: func(t *testing.T, sim *telegramsim.Server, _ *models.Message, err error) {
				wantDescription(t, err, bot.ErrorForbidden, telegramsim.DescBlocked)
				if len(sim.Sent()) != 0 {
					t.Fatal("a refused send was recorded")
				}
			},
		},
		{
			name:   "chat not found",
			setup:  func(sim *telegramsim.Server) { sim.SetChatNotFound(42) },
			params: bot.SendMessageParams{ChatID: 42, Text: "hello"},
			check:  wantBadRequest(telegramsim.DescChatNotFound),
		},
		{
			name:   "migrated group answers with migrate_to_chat_id",
			setup:  func(sim *telegramsim.Server) { sim.MigrateChat(-42, -1001234567890) },
			params: bot.SendMessageParams{ChatID: -42, Text: "hello"},
			check: func(t *testing.T, _ *telegramsim.Server, _ *models.Message, err error) {
				var me *bot.MigrateError
				if !errors.As(err, &me) || me.MigrateToChatID != -1001234567890 {
					t.Fatalf("error = %v, want MigrateError to -1001234567890", err)
				}
			},
		},
		{
			name:   "reply to an unknown message is refused",
			params: bot.SendMessageParams{ChatID: 42, Text: "re", ReplyParameters: &models.ReplyParameters{MessageID: 77}},
			check:  wantBadRequest(telegramsim.DescReplyNotFound),
		},
		{
			name:   "reply to an unknown message is sent when allowed without reply",
			params: bot.SendMessageParams{ChatID: 42, Text: "re", ReplyParameters: &models.ReplyParameters{MessageID: 77, AllowSendingWithoutReply: true}},
			check: func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error) {
				if err != nil || msg.ReplyToMessage != nil || sim.Sent()[0].ReplyTo != 77 {
					t.Fatalf("err = %v, reply_to_message = %+v, recorded %+v", err, msg.ReplyToMessage, sim.Sent())
				}
			},
		},
		{
			name:   "reply to an inbound message quotes it",
			setup:  func(sim *telegramsim.Server) { sim.Enqueue(sim.UserText(42, alice, "question")) },
			params: bot.SendMessageParams{ChatID: 42, Text: "answer", ReplyParameters: &models.ReplyParameters{MessageID: 1}},
			check: func(t *testing.T, _ *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if msg.ID != 2 || msg.ReplyToMessage == nil || msg.ReplyToMessage.Text != "question" || msg.Chat.Username != "alice" {
					t.Fatalf("message = %+v", msg)
				}
			},
		},
		{
			name:   "inline keyboard and thread are echoed and recorded",
			params: bot.SendMessageParams{ChatID: -1001000000001, Text: "pick", MessageThreadID: 9, ReplyMarkup: keyboard},
			check: func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if msg.ReplyMarkup == nil || msg.ReplyMarkup.InlineKeyboard[0][0].CallbackData != "yes" || msg.MessageThreadID != 9 || !msg.IsTopicMessage {
					t.Fatalf("message = %+v", msg)
				}
				s := sim.Sent()[0]
				var kb models.InlineKeyboardMarkup
				if err := json.Unmarshal(s.ReplyMarkup, &kb); err != nil || kb.InlineKeyboard[0][1].URL != "https://example.com" || s.ThreadID != 9 {
					t.Fatalf("recorded %+v (%v)", s, err)
				}
			},
		},
		{
			name:   "callback data over 64 bytes is refused",
			params: bot.SendMessageParams{ChatID: 42, Text: "x", ReplyMarkup: &models.InlineKeyboardMarkup{InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "a", CallbackData: strings.Repeat("d", 65)}}}}},
			check:  wantBadRequest("BUTTON_DATA_INVALID"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSim(t, noLimits())
			if tt.setup != nil {
				tt.setup(srv)
			}
			msg, err := newBot(t, srv).SendMessage(timeout(t, 10*time.Second), &tt.params)
			tt.check(t, srv, msg, err)
		})
	}
}

func wantOK(t *testing.T, _ *telegramsim.Server, _ *models.Message, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantBadRequest(desc string) func(*testing.T, *telegramsim.Server, *models.Message, error) {
	return func(t *testing.T, sim *telegramsim.Server, _ *models.Message, err error) {
		t.Helper()
		wantDescription(t, err, bot.ErrorBadRequest, desc)
		if len(sim.Sent()) != 0 {
			t.Fatal("a refused send was recorded")
		}
	}
}

// TestRequestEncodings sends the same message in every encoding the Bot API accepts.
func TestRequestEncodings(t *testing.T) {
	srv := startSim(t, noLimits())
	ctx := timeout(t, 10*time.Second)
	endpoint := srv.URL + "/bot" + testToken + "/sendMessage"
	markup := `{"inline_keyboard":[[{"text":"Go","callback_data":"go"}]]}`
	form := url.Values{"chat_id": {"7"}, "text": {"hi"}, "reply_markup": {markup}, "reply_parameters": {`{"message_id":99,"allow_sending_without_reply":true}`}}

	tests := []struct {
		name  string
		build func() *http.Request
	}{
		{"json with nested objects", func() *http.Request {
			body := `{"chat_id":7,"text":"hi","reply_markup":` + markup + `,"reply_parameters":{"message_id":99,"allow_sending_without_reply":true}}`
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json; charset=utf-8")
			return req
		}},
		{"urlencoded with objects as JSON text", func() *http.Request {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return req
		}},
		{"multipart with objects as JSON text", func() *http.Request {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			for k, v := range form {
				_ = mw.WriteField(k, v[0])
			}
			_ = mw.Close()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &buf)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			return req
		}},
		{"GET with a query string", func() *http.Request {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"?"+form.Encode(), nil)
			return req
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, r := do(t, tt.build())
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, r.Description)
			}
			var msg models.Message
			if err := json.Unmarshal(r.Result, &msg); err != nil {
				t.Fatal(err)
			}
			if msg.ID != i+1 || msg.Text != "hi" || msg.ReplyMarkup == nil || msg.ReplyMarkup.InlineKeyboard[0][0].CallbackData != "go" {
				t.Fatalf("message = %+v", msg)
			}
			sent := srv.Sent()[i]
			if sent.ChatID != 7 || sent.ReplyTo != 99 || !json.Valid(sent.ReplyMarkup) {
				t.Fatalf("recorded %+v", sent)
			}
		})
	}
}

// --- media and files --------------------------------------------------------------------------------

func TestSendMedia(t *testing.T) {
	img := bytes.Repeat([]byte{0xff, 0xd8, 0x42}, 1000)
	tests := []struct {
		name  string
		send  func(ctx context.Context, b *bot.Bot, sim *telegramsim.Server) (*models.Message, error)
		check func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error)
	}{
		{
			name: "photo upload becomes a downloadable file",
			send: func(ctx context.Context, b *bot.Bot, _ *telegramsim.Server) (*models.Message, error) {
				return b.SendPhoto(ctx, &bot.SendPhotoParams{
					ChatID: 5, Photo: &models.InputFileUpload{Filename: "cat.jpg", Data: bytes.NewReader(img)},
					Caption: "<b>cat</b>", ParseMode: models.ParseModeHTML,
				})
			},
			check: func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if len(msg.Photo) == 0 || msg.Caption != "cat" || len(msg.CaptionEntities) != 1 {
					t.Fatalf("message = %+v", msg)
				}
				data, ok := sim.File(msg.Photo[0].FileID)
				if !ok || !bytes.Equal(data, img) {
					t.Fatalf("uploaded file not stored (%v, %d bytes)", ok, len(data))
				}
				s := sim.Sent()[0]
				if s.Method != "sendPhoto" || s.Media != "cat.jpg" || s.Caption != "<b>cat</b>" || s.MediaFileID != msg.Photo[0].FileID {
					t.Fatalf("recorded %+v", s)
				}
			},
		},
		{
			name: "photo by URL is accepted without fetching",
			send: func(ctx context.Context, b *bot.Bot, _ *telegramsim.Server) (*models.Message, error) {
				return b.SendPhoto(ctx, &bot.SendPhotoParams{ChatID: 5, Photo: &models.InputFileString{Data: "https://example.com/cat.jpg"}})
			},
			check: func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error) {
				if err != nil || len(msg.Photo) != 1 || sim.Sent()[0].Media != "https://example.com/cat.jpg" {
					t.Fatalf("err = %v, message = %+v", err, msg)
				}
			},
		},
		{
			name: "photo by a known file_id reuses the file",
			send: func(ctx context.Context, b *bot.Bot, sim *telegramsim.Server) (*models.Message, error) {
				sim.AddFile("known-photo", img, 0)
				return b.SendPhoto(ctx, &bot.SendPhotoParams{ChatID: 5, Photo: &models.InputFileString{Data: "known-photo"}})
			},
			check: func(t *testing.T, _ *telegramsim.Server, msg *models.Message, err error) {
				if err != nil || msg.Photo[0].FileID != "known-photo" || msg.Photo[0].FileSize != len(img) {
					t.Fatalf("err = %v, message = %+v", err, msg)
				}
			},
		},
		{
			name: "unknown file_id is refused",
			send: func(ctx context.Context, b *bot.Bot, _ *telegramsim.Server) (*models.Message, error) {
				return b.SendPhoto(ctx, &bot.SendPhotoParams{ChatID: 5, Photo: &models.InputFileString{Data: "nope"}})
			},
			check: func(t *testing.T, _ *telegramsim.Server, _ *models.Message, err error) {
				wantDescription(t, err, bot.ErrorBadRequest, telegramsim.DescWrongFile)
			},
		},
		{
			name: "caption over 1024 characters is refused",
			send: func(ctx context.Context, b *bot.Bot, _ *telegramsim.Server) (*models.Message, error) {
				return b.SendPhoto(ctx, &bot.SendPhotoParams{ChatID: 5, Photo: &models.InputFileString{Data: "https://e.x/a.png"}, Caption: strings.Repeat("c", 1025)})
			},
			check: func(t *testing.T, _ *telegramsim.Server, _ *models.Message, err error) {
				wantDescription(t, err, bot.ErrorBadRequest, telegramsim.DescCaptionTooLong)
			},
		},
		{
			name: "document upload keeps its name and type",
			send: func(ctx context.Context, b *bot.Bot, _ *telegramsim.Server) (*models.Message, error) {
				return b.SendDocument(ctx, &bot.SendDocumentParams{ChatID: 5, Document: &models.InputFileUpload{Filename: "report.pdf", Data: strings.NewReader("%PDF-1.7")}})
			},
			check: func(t *testing.T, sim *telegramsim.Server, msg *models.Message, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if msg.Document == nil || msg.Document.FileName != "report.pdf" || msg.Document.MimeType != "application/pdf" || msg.Document.FileSize != 8 {
					t.Fatalf("document = %+v", msg.Document)
				}
				if s := sim.Sent()[0]; s.Method != "sendDocument" || s.Media != "report.pdf" {
					t.Fatalf("recorded %+v", s)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSim(t, noLimits())
			msg, err := tt.send(timeout(t, 10*time.Second), newBot(t, srv), srv)
			tt.check(t, srv, msg, err)
		})
	}
}

func TestGetFileAndDownload(t *testing.T) {
	srv := startSim(t, noLimits())
	b := newBot(t, srv)
	ctx := timeout(t, 10*time.Second)
	data := bytes.Repeat([]byte("photo-bytes-"), 200)
	u := srv.Photo(5, alice, "look", data)
	srv.Enqueue(u)
	if len(u.Message.Photo) < 3 {
		t.Fatalf("photo sizes = %+v, want several", u.Message.Photo)
	}
	largest := u.Message.Photo[len(u.Message.Photo)-1]
	srv.AddFile("huge", nil, telegramsim.MaxDownloadSize+1)

	t.Run("largest photo size downloads its content", func(t *testing.T) {
		f, err := b.GetFile(ctx, &bot.GetFileParams{FileID: largest.FileID})
		if err != nil {
			t.Fatal(err)
		}
		if f.FileSize != int64(len(data)) || f.FilePath == "" || f.FileUniqueID != largest.FileUniqueID {
			t.Fatalf("file = %+v", f)
		}
		got := download(ctx, t, b.FileDownloadLink(f), http.StatusOK)
		if !bytes.Equal(got, data) {
			t.Fatalf("downloaded %d bytes, want %d", len(got), len(data))
		}
		if srv.Requests(telegramsim.FileDownloadKey) != 1 {
			t.Fatalf("downloads counted %d, want 1", srv.Requests(telegramsim.FileDownloadKey))
		}
	})
	t.Run("file over 20 MB is too big", func(t *testing.T) {
		_, err := b.GetFile(ctx, &bot.GetFileParams{FileID: "huge"})
		wantDescription(t, err, bot.ErrorBadRequest, telegramsim.DescFileTooBig)
	})
	t.Run("unknown file_id is invalid", func(t *testing.T) {
		_, err := b.GetFile(ctx, &bot.GetFileParams{FileID: "nope"})
		wantDescription(t, err, bot.ErrorBadRequest, telegramsim.DescInvalidFileID)
	})
	t.Run("download with a wrong token is unauthorized", func(t *testing.T) {
		f, err := b.GetFile(ctx, &bot.GetFileParams{FileID: largest.FileID})
		if err != nil {
			t.Fatal(err)
		}
		download(ctx, t, srv.URL+"/file/bot1:WRONG/"+f.FilePath, http.StatusUnauthorized)
	})
	t.Run("download failures can be injected", func(t *testing.T) {
		f, err := b.GetFile(ctx, &bot.GetFileParams{FileID: largest.FileID})
		if err != nil {
			t.Fatal(err)
		}
		srv.FailNext(telegramsim.FileDownloadKey, 1, telegramsim.BadGatewayHTML())
		if body := download(ctx, t, b.FileDownloadLink(f), http.StatusBadGateway); string(body) != "<html>Bad Gateway</html>" {
			t.Fatalf("body = %q", body)
		}
		download(ctx, t, b.FileDownloadLink(f), http.StatusOK)
	})
	t.Run("unknown path is not found", func(t *testing.T) {
		download(ctx, t, srv.URL+"/file/bot"+testToken+"/photos/nothing.jpg", http.StatusNotFound)
	})
}

func download(ctx context.Context, t *testing.T, link string, wantStatus int) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("GET %s: status %d, want %d", link, resp.StatusCode, wantStatus)
	}
	return body
}

// --- callback queries -------------------------------------------------------------------------------

func TestCallbackQueryRoundTrip(t *testing.T) {
	srv := startSim(t, noLimits())
	b := newBot(t, srv)
	ctx := timeout(t, 10*time.Second)
	msg, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 7, Text: "Proceed?", ReplyMarkup: &models.InlineKeyboardMarkup{
		InlineKeyboard: [][]models.InlineKeyboardButton{{{Text: "Yes", CallbackData: "yes"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Enqueue(srv.CallbackQuery(7, alice, msg.ID, "yes"))
	srv.Enqueue(srv.CallbackQuery(7, alice, 999, "stale"))
	us := getUpdates(ctx, t, srv, nil)
	if len(us) != 2 {
		t.Fatalf("got %d updates, want 2", len(us))
	}
	q := us[0].CallbackQuery
	if q == nil || q.Data != "yes" || q.From.ID != alice.ID || q.Message.Type != models.MaybeInaccessibleMessageTypeMessage ||
		q.Message.Message.ID != msg.ID || q.Message.Message.Text != "Proceed?" {
		t.Fatalf("callback query = %+v", q)
	}
	if stale := us[1].CallbackQuery.Message; stale.Type != models.MaybeInaccessibleMessageTypeInaccessibleMessage || stale.InaccessibleMessage.MessageID != 999 {
		t.Fatalf("callback on an unknown message = %+v, want inaccessible", stale)
	}

	ok, err := b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: q.ID, Text: "Done"})
	if err != nil || !ok {
		t.Fatalf("AnswerCallbackQuery = %v, %v", ok, err)
	}
	_, err = b.AnswerCallbackQuery(ctx, &bot.AnswerCallbackQueryParams{CallbackQueryID: q.ID})
	wantDescription(t, err, bot.ErrorBadRequest, telegramsim.DescQueryTooOld)
	if a := srv.CallbackAnswers(); len(a) != 1 || a[0].QueryID != q.ID || a[0].Text != "Done" {
		t.Fatalf("answers = %+v", a)
	}
}

// --- rate limits ------------------------------------------------------------------------------------

func TestRateLimits(t *testing.T) {
	type env struct {
		ctx   context.Context
		b     *bot.Bot
		sim   *telegramsim.Server
		clock *fakeClock
	}
	send := func(e env, chatID int64) error {
		_, err := e.b.SendMessage(e.ctx, &bot.SendMessageParams{ChatID: chatID, Text: "x"})
		return err
	}
	wantRetry := func(t *testing.T, err error, retryAfter int) {
		t.Helper()
		var tmr *bot.TooManyRequestsError
		if !errors.As(err, &tmr) {
			t.Fatalf("error = %v, want *bot.TooManyRequestsError", err)
		}
		if tmr.RetryAfter != retryAfter || !strings.Contains(tmr.Message, fmt.Sprintf("Too Many Requests: retry after %d", retryAfter)) {
			t.Fatalf("got %+v, want retry_after %d", tmr, retryAfter)
		}
	}
	tests := []struct {
		name string
		opts telegramsim.Options
		run  func(t *testing.T, e env)
	}{
		{
			name: "second message to a chat within a second is refused while another chat is fine",
			run: func(t *testing.T, e env) {
				if err := send(e, 1); err != nil {
					t.Fatal(err)
				}
				e.clock.Advance(300 * time.Millisecond)
				wantRetry(t, send(e, 1), 1)
				if err := send(e, 2); err != nil {
					t.Fatalf("other chat: %v", err)
				}
				e.clock.Advance(700 * time.Millisecond)
				if err := send(e, 1); err != nil {
					t.Fatalf("after the interval: %v", err)
				}
				if n := len(e.sim.SentTo(1)); n != 2 {
					t.Fatalf("recorded %d sends to chat 1, want 2", n)
				}
			},
		},
		{
			name: "a group gets 20 messages a minute",
			run: func(t *testing.T, e env) {
				for i := range 20 {
					if err := send(e, -100); err != nil {
						t.Fatalf("message %d: %v", i+1, err)
					}
					e.clock.Advance(time.Second)
				}
				wantRetry(t, send(e, -100), 40)
			},
		},
		{
			name: "the bot gets 30 messages a second across chats",
			run: func(t *testing.T, e env) {
				for i := range 30 {
					if err := send(e, int64(i+1)); err != nil {
						t.Fatalf("message %d: %v", i+1, err)
					}
				}
				wantRetry(t, send(e, 31), 1)
			},
		},
		{
			name: "configured limits apply",
			opts: telegramsim.Options{PerChatInterval: 5 * time.Second, GlobalPerSecond: telegramsim.Disabled},
			run: func(t *testing.T, e env) {
				if err := send(e, 1); err != nil {
					t.Fatal(err)
				}
				e.clock.Advance(time.Second)
				wantRetry(t, send(e, 1), 4)
			},
		},
		{
			name: "disabled limits never refuse",
			opts: noLimits(),
			run: func(t *testing.T, e env) {
				for i := range 50 {
					if err := send(e, -100); err != nil {
						t.Fatalf("message %d: %v", i+1, err)
					}
				}
			},
		},
		{
			name: "limits can be switched off at run time",
			run: func(t *testing.T, e env) {
				e.sim.SetRateLimits(telegramsim.RateLimits{})
				for range 3 {
					if err := send(e, 1); err != nil {
						t.Fatal(err)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			tt.opts.Now = clock.Now
			srv := startSim(t, tt.opts)
			tt.run(t, env{ctx: timeout(t, 10*time.Second), b: newBot(t, srv), sim: srv, clock: clock})
		})
	}

	t.Run("real clock refuses a second message within a second", func(t *testing.T) {
		srv := startSim(t, telegramsim.Options{})
		e := env{ctx: timeout(t, 10*time.Second), b: newBot(t, srv), sim: srv}
		if err := send(e, 1); err != nil {
			t.Fatal(err)
		}
		wantRetry(t, send(e, 1), 1)
		if err := send(e, 2); err != nil {
			t.Fatal(err)
		}
	})
}

// --- injected failures ------------------------------------------------------------------------------

func TestInjectedFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(sim *telegramsim.Server)
		check func(t *testing.T, sim *telegramsim.Server, err error)
	}{
		{
			name:  "500 is an untyped error",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.InternalServerError()) },
			check: func(t *testing.T, _ *telegramsim.Server, err error) {
				if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error") {
					t.Fatalf("error = %v", err)
				}
			},
		},
		{
			name:  "502 with an HTML body fails to decode",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendmessage", 1, telegramsim.BadGatewayHTML()) },
			check: func(t *testing.T, _ *telegramsim.Server, err error) {
				if err == nil || !strings.Contains(err.Error(), "<html>Bad Gateway</html>") {
					t.Fatalf("error = %v", err)
				}
			},
		},
		{
			name:  "429 carries retry_after",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.TooManyRequests(7)) },
			check: func(t *testing.T, _ *telegramsim.Server, err error) {
				var tmr *bot.TooManyRequestsError
				if !errors.As(err, &tmr) || tmr.RetryAfter != 7 {
					t.Fatalf("error = %v, want retry_after 7", err)
				}
			},
		},
		{
			name:  "403 scoped to one chat",
			setup: func(sim *telegramsim.Server) { sim.FailChat(1, telegramsim.BlockedByUser(), 1) },
			check: func(t *testing.T, _ *telegramsim.Server, err error) {
				wantDescription(t, err, bot.ErrorForbidden, telegramsim.DescBlocked)
			},
		},
		{
			name:  "a chat-scoped failure spares other chats",
			setup: func(sim *telegramsim.Server) { sim.FailChat(2, telegramsim.InternalServerError(), 5) },
			check: func(t *testing.T, _ *telegramsim.Server, err error) {
				if err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "400 with a description",
			setup: func(sim *telegramsim.Server) {
				sim.FailNext("*", 1, telegramsim.APIError(400, "Bad Request: PEER_ID_INVALID"))
			},
			check: func(t *testing.T, _ *telegramsim.Server, err error) {
				wantDescription(t, err, bot.ErrorBadRequest, "PEER_ID_INVALID")
			},
		},
		{
			name:  "dropped connection is a transport error",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.DropConnection()) },
			check: func(t *testing.T, sim *telegramsim.Server, err error) {
				if err == nil || !strings.Contains(err.Error(), "error do request") {
					t.Fatalf("error = %v, want a transport error", err)
				}
				if got := sim.Responses("sendMessage")[0]; got != 1 {
					t.Fatalf("dropped responses = %d, want 1", got)
				}
			},
		},
		{
			name:  "delay alone answers normally, later",
			setup: func(sim *telegramsim.Server) { sim.FailNext("sendMessage", 1, telegramsim.Delay(100*time.Millisecond)) },
			check: func(t *testing.T, sim *telegramsim.Server, err error) {
				if err != nil || len(sim.Sent()) != 1 {
					t.Fatalf("err = %v, sent %d", err, len(sim.Sent()))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSim(t, noLimits())
			tt.setup(srv)
			start := time.Now()
			_, err := newBot(t, srv).SendMessage(timeout(t, 10*time.Second), &bot.SendMessageParams{ChatID: 1, Text: "hi"})
			tt.check(t, srv, err)
			if strings.HasPrefix(tt.name, "delay") && time.Since(start) < 100*time.Millisecond {
				t.Fatalf("answered after %v, want at least 100ms", time.Since(start))
			}
		})
	}

	t.Run("chat and method failures apply in the order added, each to its own calls", func(t *testing.T) {
		srv := startSim(t, noLimits())
		b := newBot(t, srv)
		ctx := timeout(t, 10*time.Second)
		srv.FailChat(1, telegramsim.BlockedByUser(), 1)
		srv.FailNext("sendMessage", 1, telegramsim.InternalServerError())
		send := func(chat int64) error {
			_, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: chat, Text: "hi"})
			return err
		}
		if err := send(2); err == nil || !strings.Contains(err.Error(), "500") {
			t.Fatalf("chat 2: %v, want the method's 500", err)
		}
		wantDescription(t, send(1), bot.ErrorForbidden, telegramsim.DescBlocked)
		if err := send(1); err != nil {
			t.Fatalf("chat 1 after both failures: %v", err)
		}
	})

	t.Run("FailNext counts down, then calls succeed", func(t *testing.T) {
		srv := startSim(t, noLimits())
		b := newBot(t, srv)
		ctx := timeout(t, 10*time.Second)
		srv.FailNext("sendMessage", 2, telegramsim.InternalServerError())
		var errs int
		for range 3 {
			if _, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: 1, Text: "hi"}); err != nil {
				errs++
			}
		}
		if errs != 2 || srv.Requests("sendMessage") != 3 || len(srv.Sent()) != 1 {
			t.Fatalf("errors %d, requests %d, sent %d; want 2, 3, 1", errs, srv.Requests("sendMessage"), len(srv.Sent()))
		}
		if r := srv.Responses("sendMessage"); r[500] != 2 || r[200] != 1 {
			t.Fatalf("responses = %v", r)
		}
	})
}

// --- getUpdates -------------------------------------------------------------------------------------

func TestGetUpdatesOffsets(t *testing.T) {
	tests := []struct {
		name        string
		enqueue     int
		params      map[string]any
		wantIDs     []int64
		wantPending int
	}{
		{"no offset returns everything unconfirmed", 3, nil, []int64{1, 2, 3}, 3},
		{"offset confirms earlier updates", 3, map[string]any{"offset": 3}, []int64{3}, 1},
		{"offset past the last confirms all", 3, map[string]any{"offset": 4}, []int64{}, 0},
		{"negative offset keeps the last ones", 5, map[string]any{"offset": -2}, []int64{4, 5}, 2},
		{"limit bounds the batch", 5, map[string]any{"limit": 2}, []int64{1, 2}, 5},
		{"limit above 100 means 100", 2, map[string]any{"limit": 1000}, []int64{1, 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSim(t, noLimits())
			for i := range tt.enqueue {
				srv.Enqueue(srv.UserText(42, alice, fmt.Sprintf("m%d", i)))
			}
			got := updateIDs(getUpdates(timeout(t, 10*time.Second), t, srv, tt.params))
			if fmt.Sprint(got) != fmt.Sprint(tt.wantIDs) {
				t.Fatalf("update ids = %v, want %v", got, tt.wantIDs)
			}
			if p := srv.PendingUpdates(); p != tt.wantPending {
				t.Fatalf("pending = %d, want %d", p, tt.wantPending)
			}
		})
	}
}

func TestLongPoll(t *testing.T) {
	t.Run("a waiting poll wakes when an update is queued", func(t *testing.T) {
		srv := startSim(t, noLimits())
		ctx := timeout(t, 10*time.Second)
		done := make(chan []models.Update, 1)
		go func() { done <- getUpdates(ctx, t, srv, map[string]any{"timeout": 30}) }()
		if err := srv.WaitPolling(ctx); err != nil {
			t.Fatal(err)
		}
		id := srv.Enqueue(srv.UserText(42, alice, "wake up"))
		select {
		case us := <-done:
			if len(us) != 1 || us[0].ID != id || us[0].Message.Text != "wake up" {
				t.Fatalf("updates = %+v", us)
			}
		case <-ctx.Done():
			t.Fatal("long poll did not wake up")
		}
	})

	t.Run("a poll times out with an empty result", func(t *testing.T) {
		srv := startSim(t, noLimits())
		start := time.Now()
		us := getUpdates(timeout(t, 10*time.Second), t, srv, map[string]any{"timeout": 1})
		if len(us) != 0 || time.Since(start) < time.Second {
			t.Fatalf("got %d updates after %v, want none after 1s", len(us), time.Since(start))
		}
	})

	t.Run("a second poller terminates the older one with 409", func(t *testing.T) {
		srv := startSim(t, noLimits())
		ctx := timeout(t, 10*time.Second)
		type answer struct {
			status int
			r      apiResponse
		}
		older := make(chan answer, 1)
		go func() {
			status, r := call(ctx, t, srv.URL, testToken, "getUpdates", map[string]any{"timeout": 30})
			older <- answer{status, r}
		}()
		if err := srv.WaitPolling(ctx); err != nil {
			t.Fatal(err)
		}
		if status, r := call(ctx, t, srv.URL, testToken, "getUpdates", map[string]any{"timeout": 0}); status != http.StatusOK {
			t.Fatalf("newer poll: %d %s", status, r.Description)
		}
		select {
		case a := <-older:
			if a.status != http.StatusConflict || a.r.Description != telegramsim.DescConflictPoller {
				t.Fatalf("older poll: %d %q", a.status, a.r.Description)
			}
		case <-ctx.Done():
			t.Fatal("older poll was not terminated")
		}
	})

	t.Run("closing the server ends a waiting poll", func(t *testing.T) {
		srv := startSim(t, noLimits())
		ctx := timeout(t, 10*time.Second)
		done := make(chan int, 1)
		go func() {
			status, _ := call(ctx, t, srv.URL, testToken, "getUpdates", map[string]any{"timeout": 30})
			done <- status
		}()
		if err := srv.WaitPolling(ctx); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case status := <-done:
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
		case <-ctx.Done():
			t.Fatal("poll outlived Close")
		}
	})
}

func TestAllowedUpdatesAreSticky(t *testing.T) {
	srv := startSim(t, noLimits())
	ctx := timeout(t, 10*time.Second)
	srv.Enqueue(srv.Reaction(42, alice, 1, "👍"))
	srv.Enqueue(srv.UserText(42, alice, "hi"))
	if us := getUpdates(ctx, t, srv, nil); len(us) != 1 || us[0].Message == nil {
		t.Fatalf("default allowed_updates delivered %+v, want only the message", us)
	}

	srv.Enqueue(srv.Reaction(42, alice, 2, "🔥"))
	us := getUpdates(ctx, t, srv, map[string]any{"offset": 3, "allowed_updates": []string{"message", "message_reaction"}})
	if len(us) != 1 || us[0].MessageReaction == nil || us[0].MessageReaction.NewReaction[0].ReactionTypeEmoji.Emoji != "🔥" {
		t.Fatalf("updates = %+v, want the reaction", us)
	}
	srv.Enqueue(srv.Reaction(42, alice, 2, "👀"))
	if us := getUpdates(ctx, t, srv, map[string]any{"offset": 4}); len(us) != 1 || us[0].MessageReaction == nil {
		t.Fatalf("omitted allowed_updates delivered %+v, want the reaction (sticky)", us)
	}
	if got := srv.AllowedUpdates(); fmt.Sprint(got) != "[message message_reaction]" {
		t.Fatalf("AllowedUpdates = %v", got)
	}
}

func TestUpdateBuilders(t *testing.T) {
	clock := newFakeClock()
	opts := noLimits()
	opts.Now = clock.Now
	srv := startSim(t, opts)
	ctx := timeout(t, 10*time.Second)
	group := int64(-1001000000002)

	first := srv.UserText(42, alice, "/start hello")
	srv.Enqueue(first)
	clock.Advance(time.Minute)
	tests := []struct {
		name   string
		update models.Update
		check  func(t *testing.T, u models.Update)
	}{
		{"text with a command", first, func(t *testing.T, u models.Update) {
			m := u.Message
			if m.Text != "/start hello" || m.Chat.Type != models.ChatTypePrivate || m.From.ID != alice.ID ||
				len(m.Entities) != 1 || m.Entities[0].Type != models.MessageEntityTypeBotCommand || m.Entities[0].Length != 6 {
				t.Fatalf("message = %+v", m)
			}
		}},
		{"photo with sizes", srv.Photo(42, alice, "sunset", []byte("0123456789abcdefghijklmnopqrstuvwxyz")), func(t *testing.T, u models.Update) {
			p := u.Message.Photo
			if len(p) != 3 || p[2].Width <= p[0].Width || u.Message.Caption != "sunset" || p[2].FileSize != 36 {
				t.Fatalf("photo = %+v", p)
			}
		}},
		{"document", srv.Document(42, alice, "a.txt", "text/plain", []byte("abc")), func(t *testing.T, u models.Update) {
			if d := u.Message.Document; d == nil || d.FileName != "a.txt" || d.FileSize != 3 || d.FileID == "" {
				t.Fatalf("document = %+v", d)
			}
		}},
		{"location in a group", srv.Location(group, alice, 52.52, 13.405), func(t *testing.T, u models.Update) {
			m := u.Message
			if m.Location == nil || m.Location.Latitude != 52.52 || m.Chat.Type != models.ChatTypeSupergroup || m.Chat.ID != group {
				t.Fatalf("message = %+v", m)
			}
		}},
		{"edit keeps the id and original date", srv.EditedText(42, alice, first.Message.ID, "/start bye"), func(t *testing.T, u models.Update) {
			m := u.EditedMessage
			if m == nil || m.ID != first.Message.ID || m.Date != first.Message.Date || m.EditDate != first.Message.Date+60 || m.Text != "/start bye" {
				t.Fatalf("edited = %+v (original date %d)", m, first.Message.Date)
			}
		}},
		{"reaction", srv.Reaction(42, alice, first.Message.ID, "❤"), func(t *testing.T, u models.Update) {
			r := u.MessageReaction
			if r == nil || r.MessageID != first.Message.ID || r.User.ID != alice.ID || len(r.OldReaction) != 0 || r.NewReaction[0].ReactionTypeEmoji.Emoji != "❤" {
				t.Fatalf("reaction = %+v", r)
			}
		}},
	}
	for _, tt := range tests[1:] {
		srv.Enqueue(tt.update)
	}
	us := getUpdates(ctx, t, srv, map[string]any{"allowed_updates": []string{"message", "edited_message", "message_reaction"}})
	if len(us) != len(tests) {
		t.Fatalf("got %d updates, want %d", len(us), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if us[i].ID != int64(i+1) {
				t.Fatalf("update_id = %d, want %d", us[i].ID, i+1)
			}
			tt.check(t, us[i])
		})
	}
	if ids := []int{us[0].Message.ID, us[1].Message.ID, us[2].Message.ID}; ids[0] != 1 || ids[1] != 2 || ids[2] != 3 {
		t.Fatalf("message ids in chat 42 = %v, want 1 2 3", ids)
	}
}

func TestEnqueueJSON(t *testing.T) {
	srv := startSim(t, noLimits())
	id, err := srv.EnqueueJSON([]byte(`{"update_id":999,"message":{"message_id":5,"date":1,"chat":{"id":3,"type":"private"},"text":"raw"}}`))
	if err != nil || id != 1 {
		t.Fatalf("EnqueueJSON = %d, %v", id, err)
	}
	if _, err := srv.EnqueueJSON([]byte(`not json`)); err == nil {
		t.Fatal("EnqueueJSON accepted invalid JSON")
	}
	us := getUpdates(timeout(t, 10*time.Second), t, srv, nil)
	if len(us) != 1 || us[0].ID != 1 || us[0].Message.Text != "raw" {
		t.Fatalf("updates = %+v", us)
	}
	// The raw message is known, so a reply to it quotes it and the next send gets the next id.
	msg, err := newBot(t, srv).SendMessage(timeout(t, 10*time.Second), &bot.SendMessageParams{ChatID: 3, Text: "re", ReplyParameters: &models.ReplyParameters{MessageID: 5}})
	if err != nil || msg.ID != 6 || msg.ReplyToMessage.Text != "raw" {
		t.Fatalf("reply = %+v, %v", msg, err)
	}
}

// --- webhook ----------------------------------------------------------------------------------------

type delivery struct {
	secret string
	body   []byte
}

// receiver is a webhook endpoint that fails the first failFirst deliveries with 500.
func receiver(t *testing.T, failFirst int32) (*httptest.Server, chan delivery) {
	t.Helper()
	got := make(chan delivery, 64)
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case got <- delivery{secret: r.Header.Get(telegramsim.SecretTokenHeader), body: body}:
		default:
		}
		if calls.Add(1) <= failFirst {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func TestWebhook(t *testing.T) {
	t.Run("pushes updates in order with the secret, retrying on 500", func(t *testing.T) {
		opts := noLimits()
		opts.WebhookRetryMin, opts.WebhookRetryMax = 10*time.Millisecond, 40*time.Millisecond
		srv := startSim(t, opts)
		b := newBot(t, srv)
		ctx := timeout(t, 10*time.Second)
		hook, got := receiver(t, 2)

		ok, err := b.SetWebhook(ctx, &bot.SetWebhookParams{URL: hook.URL + "/tg", SecretToken: "s3cr3t_-X", AllowedUpdates: []string{"message"}})
		if err != nil || !ok {
			t.Fatalf("SetWebhook = %v, %v", ok, err)
		}
		for i := range 3 {
			srv.Enqueue(srv.UserText(42, alice, fmt.Sprintf("m%d", i)))
		}
		var ids []int64
		for len(ids) < 5 {
			select {
			case d := <-got:
				if d.secret != "s3cr3t_-X" {
					t.Fatalf("secret header = %q", d.secret)
				}
				var u models.Update
				if err := json.Unmarshal(d.body, &u); err != nil || u.Message == nil {
					t.Fatalf("delivery %s is not one update: %v", d.body, err)
				}
				ids = append(ids, u.ID)
			case <-ctx.Done():
				t.Fatalf("deliveries so far %v", ids)
			}
		}
		if fmt.Sprint(ids) != "[1 1 1 2 3]" {
			t.Fatalf("delivered update ids %v, want [1 1 1 2 3]", ids)
		}
		if err := srv.WaitDrained(ctx); err != nil {
			t.Fatal(err)
		}
		info, err := b.GetWebhookInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.URL != hook.URL+"/tg" || info.PendingUpdateCount != 0 || info.MaxConnections != 40 ||
			info.LastErrorDate == 0 || info.LastErrorMessage != "Wrong response from the webhook: 500 Internal Server Error" {
			t.Fatalf("webhook info = %+v", info)
		}
	})

	t.Run("getUpdates conflicts with a webhook, also for a waiting poll", func(t *testing.T) {
		srv := startSim(t, noLimits())
		b := newBot(t, srv)
		ctx := timeout(t, 10*time.Second)
		hook, _ := receiver(t, 0)
		waiting := make(chan int, 1)
		go func() {
			status, r := call(ctx, t, srv.URL, testToken, "getUpdates", map[string]any{"timeout": 30})
			if r.Description != telegramsim.DescConflictWebhook {
				t.Errorf("waiting poll: %q", r.Description)
			}
			waiting <- status
		}()
		if err := srv.WaitPolling(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := b.SetWebhook(ctx, &bot.SetWebhookParams{URL: hook.URL}); err != nil {
			t.Fatal(err)
		}
		select {
		case status := <-waiting:
			if status != http.StatusConflict {
				t.Fatalf("waiting poll status %d, want 409", status)
			}
		case <-ctx.Done():
			t.Fatal("waiting poll not ended by setWebhook")
		}
		status, r := call(ctx, t, srv.URL, testToken, "getUpdates", nil)
		if status != http.StatusConflict || r.Description != telegramsim.DescConflictWebhook {
			t.Fatalf("getUpdates: %d %q", status, r.Description)
		}
		if ok, err := b.DeleteWebhook(ctx, &bot.DeleteWebhookParams{}); err != nil || !ok {
			t.Fatalf("DeleteWebhook = %v, %v", ok, err)
		}
		if status, _ := call(ctx, t, srv.URL, testToken, "getUpdates", nil); status != http.StatusOK {
			t.Fatalf("getUpdates after deleteWebhook: %d", status)
		}
	})

	t.Run("gives up on an update after WebhookMaxAttempts failures", func(t *testing.T) {
		opts := noLimits()
		opts.WebhookRetryMin, opts.WebhookMaxAttempts = 5*time.Millisecond, 3
		srv := startSim(t, opts)
		ctx := timeout(t, 10*time.Second)
		hook, got := receiver(t, 1000)
		if status, r := call(ctx, t, srv.URL, testToken, "setWebhook", map[string]any{"url": hook.URL}); status != 200 || r.Description != "Webhook was set" {
			t.Fatalf("setWebhook: %d %q", status, r.Description)
		}
		srv.Enqueue(srv.UserText(1, alice, "doomed"))
		if err := srv.WaitDrained(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(got); n != 3 {
			t.Fatalf("%d delivery attempts, want 3", n)
		}
	})

	t.Run("an update dropped while it is retried is not retried again", func(t *testing.T) {
		opts := noLimits()
		opts.WebhookRetryMin = 100 * time.Millisecond // two failures: the next attempt waits 200ms
		srv := startSim(t, opts)
		ctx := timeout(t, 10*time.Second)
		hook, got := receiver(t, 2)
		set := map[string]any{"url": hook.URL}
		if status, r := call(ctx, t, srv.URL, testToken, "setWebhook", set); status != 200 {
			t.Fatalf("setWebhook: %d %q", status, r.Description)
		}
		srv.Enqueue(srv.UserText(1, alice, "dropped"))
		var ids []int64
		next := func() {
			t.Helper()
			select {
			case d := <-got:
				var u models.Update
				if err := json.Unmarshal(d.body, &u); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, u.ID)
			case <-ctx.Done():
				t.Fatalf("deliveries so far %v", ids)
			}
		}
		next()
		next()
		set["drop_pending_updates"] = true
		if status, r := call(ctx, t, srv.URL, testToken, "setWebhook", set); status != 200 || r.Description != "Webhook is already set" {
			t.Fatalf("setWebhook again: %d %q", status, r.Description)
		}
		srv.Enqueue(srv.UserText(1, alice, "kept"))
		next()
		if err := srv.WaitDrained(ctx); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids) != "[1 1 2]" {
			t.Fatalf("delivered update ids %v, want [1 1 2]", ids)
		}
	})

	t.Run("drop_pending_updates empties the queue", func(t *testing.T) {
		srv := startSim(t, noLimits())
		srv.Enqueue(srv.UserText(1, alice, "old"))
		ctx := timeout(t, 10*time.Second)
		if status, r := call(ctx, t, srv.URL, testToken, "deleteWebhook", map[string]any{"drop_pending_updates": true}); status != 200 || r.Description != "Webhook is already deleted" {
			t.Fatalf("deleteWebhook: %d %q", status, r.Description)
		}
		if srv.PendingUpdates() != 0 {
			t.Fatalf("pending = %d", srv.PendingUpdates())
		}
	})

	validation := []struct {
		name   string
		params bot.SetWebhookParams
		desc   string
	}{
		{"secret with a forbidden character", bot.SetWebhookParams{URL: "https://example.com/hook", SecretToken: "bad secret!"}, "secret token"},
		{"secret over 256 characters", bot.SetWebhookParams{URL: "https://example.com/hook", SecretToken: strings.Repeat("a", 257)}, "secret token"},
		{"plain http to a public host", bot.SetWebhookParams{URL: "http://example.com/hook"}, "An HTTPS URL must be provided"},
		{"unsupported port", bot.SetWebhookParams{URL: "https://example.com:9999/hook"}, "ports 80, 88, 443 or 8443"},
	}
	for _, tt := range validation {
		t.Run("setWebhook refuses "+tt.name, func(t *testing.T) {
			srv := startSim(t, noLimits())
			_, err := newBot(t, srv).SetWebhook(timeout(t, 10*time.Second), &tt.params)
			wantDescription(t, err, bot.ErrorBadRequest, tt.desc)
		})
	}
}

// --- waiting and concurrency ------------------------------------------------------------------------

func TestWaitSent(t *testing.T) {
	srv := startSim(t, noLimits())
	b := newBot(t, srv)

	t.Run("ends with the context when nothing is sent", func(t *testing.T) {
		got, err := srv.WaitSent(timeout(t, 50*time.Millisecond), 1)
		if !errors.Is(err, context.DeadlineExceeded) || len(got) != 0 {
			t.Fatalf("WaitSent = %v, %v", got, err)
		}
	})

	t.Run("returns once enough sends from concurrent senders were recorded", func(t *testing.T) {
		ctx := timeout(t, 10*time.Second)
		const chats, perChat = 5, 20
		var wg sync.WaitGroup
		for c := range chats {
			for range perChat {
				wg.Go(func() {
					if _, err := b.SendMessage(ctx, &bot.SendMessageParams{ChatID: int64(c + 1), Text: "x"}); err != nil {
						t.Error(err)
					}
				})
			}
		}
		got, err := srv.WaitSent(ctx, chats*perChat)
		if err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if len(got) != chats*perChat {
			t.Fatalf("got %d sends", len(got))
		}
		for c := range chats {
			seen := map[int]bool{}
			for _, m := range srv.SentTo(int64(c + 1)) {
				if seen[m.MessageID] || m.MessageID < 1 || m.MessageID > perChat {
					t.Fatalf("chat %d: message id %d repeated or out of range", c+1, m.MessageID)
				}
				seen[m.MessageID] = true
			}
		}
		if to, err := srv.WaitSentTo(ctx, 3, perChat); err != nil || len(to) != perChat {
			t.Fatalf("WaitSentTo = %d, %v", len(to), err)
		}
	})
}

func TestChatActionAndLatency(t *testing.T) {
	opts := noLimits()
	opts.Latency = 50 * time.Millisecond
	srv := startSim(t, opts)
	b := newBot(t, srv)
	ctx := timeout(t, 10*time.Second)
	start := time.Now()
	if ok, err := b.SendChatAction(ctx, &bot.SendChatActionParams{ChatID: 9, Action: models.ChatActionTyping}); err != nil || !ok {
		t.Fatalf("SendChatAction = %v, %v", ok, err)
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatalf("answered after %v despite 50ms latency", time.Since(start))
	}
	if a := srv.ChatActions(); len(a) != 1 || a[0].ChatID != 9 || a[0].Action != "typing" {
		t.Fatalf("actions = %+v", a)
	}
	srv.Block(9)
	_, err := b.SendChatAction(ctx, &bot.SendChatActionParams{ChatID: 9, Action: models.ChatActionTyping})
	wantDescription(t, err, bot.ErrorForbidden, telegramsim.DescBlocked)
}

// --- fuzzing ----------------------------------------------------------------------------------------

// FuzzSendMessage checks that no text or parse mode makes the simulator fail or answer outside the
// Bot API envelope.
func FuzzSendMessage(f *testing.F) {
	for _, seed := range []string{
		"hello", "<b>x</b>", `<a href="u">l</a>`, "<b><i>x</b>", "&#128512; &amp; &bogus;", "*b* _i_ __u__ ~s~ ||p||",
		`\. \! [l](u) ![e](tg://emoji?id=1)`, "```go\ncode```", ">quote\n**>exp||", "<pre><code class=\"language-x\">y</code></pre>",
	} {
		f.Add(seed, uint8(0))
		f.Add(seed, uint8(1))
		f.Add(seed, uint8(2))
	}
	modes := []string{"HTML", "MarkdownV2", "Markdown", ""}
	f.Fuzz(func(t *testing.T, text string, mode uint8) {
		sim := telegramsim.New(noLimits())
		defer sim.Close()
		body, _ := json.Marshal(map[string]any{"chat_id": 1, "text": text, "parse_mode": modes[int(mode)%len(modes)]})
		req := httptest.NewRequest(http.MethodPost, "/bot"+telegramsim.DefaultToken+"/sendMessage", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, req)
		var r apiResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("answer %q is not JSON: %v", rec.Body, err)
		}
		switch {
		case rec.Code == http.StatusOK && r.OK:
			var msg models.Message
			if err := json.Unmarshal(r.Result, &msg); err != nil {
				t.Fatal(err)
			}
			for _, e := range msg.Entities {
				if e.Offset < 0 || e.Length <= 0 {
					t.Fatalf("entity %+v out of range", e)
				}
			}
		case rec.Code == http.StatusBadRequest && !r.OK && strings.HasPrefix(r.Description, "Bad Request: "):
		default:
			t.Fatalf("answer %d %s", rec.Code, rec.Body)
		}
	})
}
