package normalize

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SpecVersion is the CloudEvents version Parley speaks.
const SpecVersion = "1.0"

// ContentType is the Content-Type header of every event and reply message.
const ContentType = "application/cloudevents+json"

// wireEvent is the structured-mode CloudEvents document.
type wireEvent struct {
	SpecVersion     string         `json:"specversion"`
	ID              EventID        `json:"id"`
	Source          string         `json:"source"`
	Type            Type           `json:"type"`
	Subject         ConversationID `json:"subject,omitempty"`
	Time            string         `json:"time"`
	DataContentType string         `json:"datacontenttype"`
	Data            Data           `json:"data"`
}

// Source returns the CloudEvents source of a connector's events.
func Source(region, platform, connector string) string {
	return "parley:" + region + ":" + platform + ":" + connector
}

// Encode renders e as a CloudEvents 1.0 structured-mode JSON document.
// Times are RFC 3339 UTC. It validates first, so nothing malformed is ever
// published.
func Encode(e *Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	d := e.Data
	d.ReceivedAt = d.ReceivedAt.UTC()
	if d.WindowExpiresAt != nil {
		t := d.WindowExpiresAt.UTC()
		d.WindowExpiresAt = &t
	}
	if d.Message != nil {
		m := *d.Message
		if m.Attachments == nil {
			m.Attachments = []Attachment{}
		}
		if m.Contacts == nil {
			m.Contacts = []Contact{}
		}
		d.Message = &m
	}
	if d.Receipt != nil {
		r := *d.Receipt
		if r.PlatformIDs == nil {
			r.PlatformIDs = []string{}
		}
		if r.ReplyIDs == nil {
			r.ReplyIDs = []string{}
		}
		d.Receipt = &r
	}
	if d.Reply != nil {
		r := *d.Reply
		if r.PlatformIDs == nil {
			r.PlatformIDs = []string{}
		}
		d.Reply = &r
	}
	return json.Marshal(wireEvent{
		SpecVersion:     SpecVersion,
		ID:              e.ID,
		Source:          e.Source,
		Type:            e.Type,
		Subject:         e.Subject,
		Time:            e.Time.UTC().Format(time.RFC3339Nano),
		DataContentType: "application/json",
		Data:            d,
	})
}

// Decode parses a structured-mode CloudEvents document into an Event.
// Unknown fields are ignored, as the contract asks of every consumer.
func Decode(b []byte) (*Event, error) {
	var w wireEvent
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decoding event: %w", err)
	}
	if w.SpecVersion != SpecVersion {
		return nil, fmt.Errorf("decoding event: specversion %q, want %q", w.SpecVersion, SpecVersion)
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return nil, fmt.Errorf("decoding event: time: %w", err)
	}
	e := &Event{ID: w.ID, Source: w.Source, Type: w.Type, Subject: w.Subject, Time: t, Data: w.Data}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return e, nil
}

// Validate checks that e is a well-formed canonical event: ids, type, and
// the data part that its type requires.
func (e *Event) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !ValidID("e_", string(e.ID)) {
		add("id %q is not an event id", e.ID)
	}
	if e.Type.Kind() == "" {
		add("type %q is unknown", e.Type)
	}
	if e.Time.IsZero() {
		add("time is zero")
	}
	d := e.Data
	if d.Region == "" || d.Platform == "" || d.Connector == "" {
		add("data.region, data.platform and data.connector are required")
	}
	if want := Source(d.Region, d.Platform, d.Connector); e.Source != want {
		add("source %q does not match data (%q)", e.Source, want)
	}
	if e.Type != TypeConnectorState {
		if !ValidID("c_", string(e.Subject)) {
			add("subject %q is not a conversation id", e.Subject)
		}
		if d.Conversation == nil || d.Conversation.ID != e.Subject {
			add("data.conversation.id must equal subject")
		}
	}
	parts := 0
	for _, set := range []bool{d.Message != nil, d.Reaction != nil, d.Receipt != nil, d.Reply != nil, d.Media != nil, d.State != nil} {
		if set {
			parts++
		}
	}
	var need bool
	switch e.Type.Kind() {
	case "message":
		need = d.Message != nil
		if d.Message != nil {
			for i, a := range d.Message.Attachments {
				if !ValidID("m_", string(a.MediaID)) {
					add("data.message.attachments[%d].media_id %q is not a media id", i, a.MediaID)
				}
			}
			if e.Type == TypePostbackReceived && d.Message.Postback == nil {
				add("data.message.postback is required for %s", e.Type)
			}
		}
	case "reaction":
		need = d.Reaction != nil
	case "receipt":
		need = d.Receipt != nil
	case "status":
		need = d.Reply != nil
	case "media":
		need = d.Media != nil
	case "connector":
		need = d.State != nil
	}
	if e.Type.Kind() != "" && (!need || parts != 1) {
		add("data must carry exactly the part for %s", e.Type)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid event: %w", errors.Join(errs...))
	}
	return nil
}
