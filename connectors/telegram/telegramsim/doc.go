// Package telegramsim simulates the Telegram Bot API for one bot, over real HTTP, so that Parley's
// tests and `parley demo` run with no network and no Telegram account.
//
// A Sim is an http.Handler answering the wire format of https://core.telegram.org/bots/api:
// POST or GET <base>/bot<token>/<method> with parameters in the query string or a JSON, urlencoded
// or multipart body (nested objects such as reply_markup as JSON text in form fields), answered with
// {"ok":true,"result":...} or {"ok":false,"error_code":N,"description":"...","parameters":{...}} and
// HTTP status N. Files download from <base>/file/bot<token>/<file_path>. Start serves it on
// 127.0.0.1; point go-telegram/bot at it with bot.WithServerURL(srv.URL).
//
// What it simulates:
//   - getMe; getUpdates with offset confirmation, negative offsets, limit, long polling woken by
//     Enqueue, sticky allowed_updates (message_reaction, message_reaction_count and chat_member only
//     when listed), 409 for the older of two concurrent polls and while a webhook is set;
//   - setWebhook, deleteWebhook, getWebhookInfo, and delivery of queued updates to the webhook, one
//     JSON update per POST in update_id order with X-Telegram-Bot-Api-Secret-Token, retried with a
//     short doubling back-off while the endpoint fails, the failure reported in last_error_*;
//   - sendMessage (parse_mode HTML, MarkdownV2 and Markdown parsed into entities, 1–4096 UTF-16
//     units after parsing, reply_parameters, message_thread_id, reply_markup), sendPhoto and
//     sendDocument (file_id, URL or upload; caption ≤ 1024), sendChatAction, answerCallbackQuery,
//     getFile (400 above 20 MB);
//   - blocked users, unknown and migrated chats, flood control (1 message/s per chat, 20/min per
//     group, 30/s per bot, each configurable) answered with 429 and retry_after, and failures
//     injected per method or per chat: any status and description, an HTML body, a dropped
//     connection, a delay.
//
// Every successful send is recorded (Sent, WaitSent) with what the client sent and what the
// simulator answered; requests are counted per method (Requests).
//
// What it does not simulate: other methods (they answer 404 Not Found, like unknown ones), more than
// one bot token, the test environment (/bot<token>/test/...), Telegram's own clients (inbound traffic
// is whatever the test enqueues), fetching media URLs (any http(s) URL is accepted), upload size and
// dimension checks, callback query expiry, privacy mode, and the exact wording of errors the docs do
// not state. Two relaxations are deliberate: webhooks may be plain http on a loopback host (Telegram
// requires HTTPS on ports 443, 80, 88 or 8443), and webhook delivery is sequential whatever
// max_connections says, so order is strict. Records and queues live in memory and are not bounded
// except for the messages remembered per chat for replies.
//
// Invariants: update_ids increase by one from Options.FirstUpdateID; message ids increase per chat,
// shared by inbound updates built here and the bot's sends; a failed request (injected, rate limited
// or invalid) records nothing and consumes no rate-limit budget. All methods are safe for concurrent
// use, and every wait inside the simulator ends with its request's context or Close.
package telegramsim
