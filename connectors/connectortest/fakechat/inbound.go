package fakechat

// Inbound mapping: one webhook body → one kit.Update per event. Everything
// here is pure (no I/O, no clock, no logging) so that golden files pin it
// and the fuzzer can hammer it; what only the reply ledger knows (receipts'
// replies, echoes of Parley's own sends, late failures) is looked up
// afterwards by the webhook's Resolve hook, from the followUp each update
// carries.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/parley-gateway/parley/connectors/kit"
	"github.com/parley-gateway/parley/normalize"
)

// platform is the platform name in ids, sources and data.
const platform = "fakechat"

// webhookObject is the "object" of every fakechat webhook body.
const webhookObject = "fakechat"

// maxMillis is 9999-12-31T23:59:59.999Z: later times cannot be written as
// RFC 3339, so an event carrying one could never be encoded.
const maxMillis = 253402300799999

// inboundContext carries what the pure mapping needs beyond the body.
type inboundContext struct {
	Region, Connector string
	// Known reports whether an account is in the connector's settings.
	Known      func(account string) bool
	ReceivedAt time.Time
}

// The webhook body as fakechat sends it. Entries and events stay raw until
// their turn, so that one bad event is one dead-lettered update and not a
// refused body.
type (
	wireBody struct {
		Object string            `json:"object"`
		Entry  []json.RawMessage `json:"entry"`
	}
	wireEntry struct {
		Account string            `json:"account"`
		Time    int64             `json:"time"`
		Events  []json.RawMessage `json:"events"`
	}
	wireUser struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Username string `json:"username"`
		Language string `json:"language"`
	}
	wireAttachment struct {
		Kind     string `json:"kind"`
		URL      string `json:"url"`
		MimeType string `json:"mime_type"`
		Size     int64  `json:"size"`
		Filename string `json:"filename"`
	}
	wireLocation struct {
		Lat *float64 `json:"lat"`
		Lon *float64 `json:"lon"`
	}
	wireStatusError struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	// wireEvent is every event type's fields in one struct; each type
	// reads its own.
	wireEvent struct {
		Type        string           `json:"type"`
		TS          int64            `json:"ts"`
		From        *wireUser        `json:"from"`
		ID          string           `json:"id"`
		Text        string           `json:"text"`
		ReplyTo     string           `json:"reply_to"`
		Attachments []wireAttachment `json:"attachments"`
		Location    *wireLocation    `json:"location"`
		Target      string           `json:"target"`
		Emoji       string           `json:"emoji"`
		Action      string           `json:"action"`
		Payload     string           `json:"payload"`
		Title       string           `json:"title"`
		IDs         []string         `json:"ids"`
		Watermark   int64            `json:"watermark"`
		To          *wireUser        `json:"to"`
		Status      string           `json:"status"`
		Error       *wireStatusError `json:"error"`
	}
)

// Event types fakechat sends.
const (
	evMessage  = "message"
	evEdit     = "edit"
	evReaction = "reaction"
	evPostback = "postback"
	evDelivery = "delivery"
	evRead     = "read"
	evEcho     = "echo"
	evStatus   = "status"
)

// followUp is what the Resolve hook must look up in the reply ledger for
// one update before it is stored.
type followUp struct {
	kind      lookup
	ids       []string // lookupSent: the platform ids a receipt names
	conv      normalize.ConversationID
	watermark time.Time // lookupSentUntil
	id        string    // lookupEcho, lookupFailure: the message's platform id
	failure   normalize.ReplyError
}

type lookup int

const (
	lookupSent      lookup = iota + 1 // a delivery receipt: the replies its ids belong to
	lookupSentUntil                   // a read receipt: the replies up to its watermark
	lookupEcho                        // an echo: Parley's own send, or someone else's
	lookupFailure                     // a failed status: a late failure of Parley's send
)

// Ignored kinds (kit.Update.Ignored).
const (
	ignoredOwnEcho      = "own echo"
	ignoredLateFailure  = "late failure reported"
	ignoredUnknownSend  = "status of a message Parley did not send"
	ignoredEmptyMessage = "message without content"
)

// parseBody maps one webhook body. An error means the body is not a
// fakechat webhook at all (not JSON, another object, an entry without its
// account or events) and the webhook answers 400. Anything wrong inside one
// event, or an entry for an account this connector does not serve, is an
// update with Err instead: it is dead-lettered and acknowledged, so that it
// cannot hold back the other events of the body, which fakechat would
// otherwise redeliver for ever. Every event returned passes Validate.
func parseBody(ic inboundContext, body []byte) ([]kit.Update, error) {
	var b wireBody
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("decoding fakechat webhook body: %w", err)
	}
	if b.Object != webhookObject {
		return nil, fmt.Errorf("decoding fakechat webhook body: object %q, want %q", b.Object, webhookObject)
	}
	if b.Entry == nil {
		return nil, errors.New("decoding fakechat webhook body: entry missing")
	}
	var updates []kit.Update
	for i, raw := range b.Entry {
		var e wireEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, fmt.Errorf("decoding fakechat webhook entry %d: %w", i, err)
		}
		if e.Account == "" || e.Events == nil {
			return nil, fmt.Errorf("decoding fakechat webhook entry %d: account and events are required", i)
		}
		if ic.Known == nil || !ic.Known(e.Account) {
			updates = append(updates, kit.Update{
				ID:  "entry for account " + e.Account,
				Raw: raw,
				Err: fmt.Errorf("fakechat account %q is not in this connector's settings", e.Account),
			})
			continue
		}
		for _, ev := range e.Events {
			updates = append(updates, ic.mapEvent(e.Account, ev))
		}
	}
	return updates, nil
}

// mapEvent maps one event of an account's entry.
func (ic inboundContext) mapEvent(account string, raw json.RawMessage) kit.Update {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return kit.Update{Raw: raw, Err: errors.New("decoding fakechat event: not an object with a string type")}
	}
	switch head.Type {
	case evMessage, evEdit, evReaction, evPostback, evDelivery, evRead, evEcho, evStatus:
	default:
		// Decoded no further: a type Parley does not know may carry
		// fields of any shape.
		return kit.Update{ID: head.Type, Raw: raw, Ignored: "event type " + strconv.Quote(head.Type)}
	}
	var ev wireEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return kit.Update{ID: head.Type, Raw: raw, Err: fmt.Errorf("decoding fakechat %s event: %s", head.Type, jsonProblem(err))}
	}
	u, err := ic.mapWire(account, &ev)
	u.Raw = raw
	if u.ID = ev.Type; ev.ID != "" {
		u.ID += " " + ev.ID
	}
	if err == nil {
		for _, e := range u.Events {
			if err = e.Validate(); err != nil {
				break
			}
		}
	}
	if err != nil {
		return kit.Update{ID: u.ID, Raw: raw, Err: fmt.Errorf("mapping fakechat %s event: %w", ev.Type, err)}
	}
	return u
}

// mapWire dispatches on the event type.
func (ic inboundContext) mapWire(account string, ev *wireEvent) (kit.Update, error) {
	if ev.Type == evStatus {
		return ic.mapStatus(ev)
	}
	at, err := millis("ts", ev.TS)
	if err != nil {
		return kit.Update{}, err
	}
	if ev.Type == evEcho {
		return ic.mapEcho(account, ev, at)
	}
	if ev.From == nil || ev.From.ID == "" {
		return kit.Update{}, errors.New("from.id missing")
	}
	conv := conversation(account, ev.From.ID)
	sender := &normalize.Sender{
		ID:         normalize.NewSenderID(platform, account, ev.From.ID),
		PlatformID: ev.From.ID,
		Name:       ev.From.Name,
		Username:   ev.From.Username,
		Language:   ev.From.Language,
	}
	event := func(typ normalize.Type, idParts ...string) *normalize.Event {
		return ic.event(typ, account, conv, sender, at, idParts...)
	}

	switch ev.Type {
	case evMessage:
		if ev.ID == "" {
			return kit.Update{}, errors.New("id missing")
		}
		msg, err := content(account, ev)
		if err != nil {
			return kit.Update{}, err
		}
		if msg == nil {
			return kit.Update{Ignored: ignoredEmptyMessage}, nil
		}
		e := event(normalize.TypeMessageReceived, "msg", ev.ID)
		e.Data.Message = msg
		return one(e), nil

	case evEdit:
		if ev.ID == "" {
			return kit.Update{}, errors.New("id missing")
		}
		e := event(normalize.TypeMessageEdited, "edit", ev.ID, strconv.FormatInt(ev.TS, 10))
		e.Data.Message = &normalize.Message{PlatformID: ev.ID, Text: ev.Text, EditedAt: &at}
		return one(e), nil

	case evReaction:
		typ := normalize.TypeReactionAdded
		switch {
		case ev.Target == "":
			return kit.Update{}, errors.New("target missing")
		case ev.Action == "remove":
			typ = normalize.TypeReactionRemoved
		case ev.Action != "add":
			return kit.Update{}, fmt.Errorf("action %q, want add or remove", ev.Action)
		case ev.Emoji == "":
			return kit.Update{}, errors.New("emoji missing")
		}
		e := event(typ, "reaction", ev.Action, ev.Target, ev.From.ID, ev.Emoji, strconv.FormatInt(ev.TS, 10))
		e.Data.Reaction = &normalize.Reaction{TargetPlatformID: ev.Target, Emoji: ev.Emoji}
		return one(e), nil

	case evPostback:
		if ev.ID == "" || ev.Payload == "" {
			return kit.Update{}, errors.New("id and payload are required")
		}
		e := event(normalize.TypePostbackReceived, "postback", ev.ID)
		e.Data.Message = &normalize.Message{
			PlatformID: ev.Target,
			Postback:   &normalize.Postback{ID: ev.Payload, Title: ev.Title, Payload: ev.Payload},
		}
		return one(e), nil

	case evDelivery:
		var ids []string
		for _, id := range ev.IDs {
			if id != "" {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return kit.Update{}, errors.New("ids missing")
		}
		parts := append([]string{"delivery", ev.From.ID, strconv.FormatInt(ev.TS, 10)}, ids...)
		e := event(normalize.TypeReceiptDelivered, parts...)
		e.Data.Receipt = &normalize.Receipt{PlatformIDs: ids, ReplyIDs: []string{}}
		u := one(e)
		u.Data = &followUp{kind: lookupSent, ids: ids}
		return u, nil

	case evRead:
		wm, err := millis("watermark", ev.Watermark)
		if err != nil {
			return kit.Update{}, err
		}
		e := event(normalize.TypeReceiptRead, "read", ev.From.ID, strconv.FormatInt(ev.Watermark, 10))
		e.Data.Receipt = &normalize.Receipt{PlatformIDs: []string{}, Watermark: &wm, ReplyIDs: []string{}}
		u := one(e)
		// The watermark counts milliseconds and the ledger keeps finer
		// times: a message sent within the watermark's millisecond is read.
		u.Data = &followUp{kind: lookupSentUntil, conv: conv.ID, watermark: wm.Add(time.Millisecond - 1)}
		return u, nil
	}
	return kit.Update{}, fmt.Errorf("event type %q has no mapping", ev.Type)
}

// mapEcho maps a message the business sent to a customer: Parley's own
// (which Resolve drops), or one sent outside Parley, from fakechat's inbox.
func (ic inboundContext) mapEcho(account string, ev *wireEvent, at time.Time) (kit.Update, error) {
	if ev.ID == "" {
		return kit.Update{}, errors.New("id missing")
	}
	if ev.To == nil || ev.To.ID == "" {
		return kit.Update{}, errors.New("to.id missing")
	}
	msg, err := content(account, ev)
	if err != nil {
		return kit.Update{}, err
	}
	if msg == nil {
		msg = &normalize.Message{PlatformID: ev.ID}
	}
	// The sender is the business: the agent fakechat names, or the account.
	sender := &normalize.Sender{PlatformID: account, IsBusiness: true}
	if ev.From != nil && ev.From.ID != "" {
		sender.PlatformID, sender.Name, sender.Username = ev.From.ID, ev.From.Name, ev.From.Username
	}
	sender.ID = normalize.NewSenderID(platform, account, sender.PlatformID)
	e := ic.event(normalize.TypeMessageEcho, account, conversation(account, ev.To.ID), sender, at, "echo", ev.ID)
	e.Data.Message = msg
	u := one(e)
	u.Data = &followUp{kind: lookupEcho, id: ev.ID}
	return u, nil
}

// mapStatus maps what fakechat later says about a message the business
// sent. Only a failure matters: Resolve reports it as a late failure when
// Parley sent the message. Delivered and read statuses are ignored, as the
// delivery and read events already say the same as receipts.
func (ic inboundContext) mapStatus(ev *wireEvent) (kit.Update, error) {
	switch {
	case ev.ID == "":
		return kit.Update{}, errors.New("id missing")
	case ev.Status == "":
		return kit.Update{}, errors.New("status missing")
	case ev.Status != "failed":
		return kit.Update{Ignored: "status " + strconv.Quote(ev.Status)}, nil
	}
	var code int
	var message string
	if ev.Error != nil {
		code, message = ev.Error.Code, ev.Error.Message
	}
	return kit.Update{
		Ignored: ignoredUnknownSend, // until Resolve finds the send
		Data:    &followUp{kind: lookupFailure, id: ev.ID, failure: lateFailure(code, message)},
	}, nil
}

// content maps what a message carries: text, a quoted message,
// attachments and a location. It returns nil for a message without any.
func content(account string, ev *wireEvent) (*normalize.Message, error) {
	msg := &normalize.Message{PlatformID: ev.ID, Text: ev.Text, ReplyTo: ev.ReplyTo}
	for i, a := range ev.Attachments {
		att := normalize.Attachment{
			Kind:     attachmentKind(a.Kind),
			MediaID:  normalize.NewMediaID(platform, account, ev.ID+"#"+strconv.Itoa(i)),
			MimeType: a.MimeType,
			Size:     max(a.Size, 0),
			Filename: a.Filename,
			Status:   normalize.MediaPending,
			// The URL alone does not say whose token fetches it.
			FetchRef: account + " " + a.URL,
		}
		if a.URL == "" {
			att.Status, att.FetchRef = normalize.MediaUnavailable, ""
			att.UnavailableReason = "fakechat sent the attachment without a url"
		}
		msg.Attachments = append(msg.Attachments, att)
	}
	if l := ev.Location; l != nil {
		switch {
		case l.Lat == nil || l.Lon == nil:
			return nil, errors.New("location without lat and lon")
		case *l.Lat < -90 || *l.Lat > 90 || *l.Lon < -180 || *l.Lon > 180:
			return nil, fmt.Errorf("location %v,%v out of range", *l.Lat, *l.Lon)
		}
		msg.Location = &normalize.Location{Latitude: *l.Lat, Longitude: *l.Lon}
	}
	if msg.Text == "" && len(msg.Attachments) == 0 && msg.Location == nil {
		return nil, nil
	}
	return msg, nil
}

// attachmentKind maps fakechat's kinds; one it does not document is a file,
// which every helpdesk can show.
func attachmentKind(kind string) normalize.AttachmentKind {
	switch kind {
	case "image":
		return normalize.AttachImage
	case "video":
		return normalize.AttachVideo
	case "audio":
		return normalize.AttachAudio
	}
	return normalize.AttachFile
}

// conversation is the direct conversation of an account with a customer.
// Its id derives from the account and the customer, never the connector.
func conversation(account, customer string) *normalize.Conversation {
	return &normalize.Conversation{
		ID:         normalize.NewConversationID(platform, account, customer),
		PlatformID: customer,
		Kind:       normalize.KindDirect,
	}
}

// event assembles an event with the fields every fakechat event shares.
// Its id derives from the account and the platform's own ids in idParts.
func (ic inboundContext) event(typ normalize.Type, account string, conv *normalize.Conversation, sender *normalize.Sender, at time.Time, idParts ...string) *normalize.Event {
	return &normalize.Event{
		ID:      normalize.NewEventID(platform, account, idParts...),
		Source:  normalize.Source(ic.Region, platform, ic.Connector),
		Type:    typ,
		Subject: conv.ID,
		Time:    at,
		Data: normalize.Data{
			Region:       ic.Region,
			Platform:     platform,
			Connector:    ic.Connector,
			Conversation: conv,
			Sender:       sender,
			ReceivedAt:   ic.ReceivedAt,
			Account:      account,
			// Ingest stamps window_expires_at from Policy.
		},
	}
}

// millis converts a fakechat time in milliseconds since the epoch.
func millis(field string, ms int64) (time.Time, error) {
	if ms <= 0 || ms > maxMillis {
		return time.Time{}, fmt.Errorf("%s %d out of range", field, ms)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// jsonProblem says which field of an event did not decode, without Go's
// type names.
func jsonProblem(err error) string {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		return fmt.Sprintf("%s must not be a JSON %s", te.Field, te.Value)
	}
	return "not valid JSON"
}

func one(e *normalize.Event) kit.Update {
	return kit.Update{Events: []*normalize.Event{e}}
}
