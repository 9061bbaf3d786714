package fakechatsim

import (
	"strconv"
	"time"
)

// Event is one webhook event as fakechat sends it; each type sets its own
// fields. Builders fill ids and times; tests may change any field before
// pushing.
type Event struct {
	Type        string       `json:"type"`
	TS          int64        `json:"ts,omitempty"` // milliseconds since the epoch
	From        *User        `json:"from,omitempty"`
	ID          string       `json:"id,omitempty"`
	Text        string       `json:"text,omitempty"`
	ReplyTo     string       `json:"reply_to,omitempty"`
	Attachments []Attachment `json:"attachments,omitempty"`
	Location    *Location    `json:"location,omitempty"`
	Target      string       `json:"target,omitempty"`
	Emoji       string       `json:"emoji,omitempty"`
	Action      string       `json:"action,omitempty"`
	Payload     string       `json:"payload,omitempty"`
	Title       string       `json:"title,omitempty"`
	IDs         []string     `json:"ids,omitempty"`
	Watermark   int64        `json:"watermark,omitempty"`
	To          *User        `json:"to,omitempty"`
	Status      string       `json:"status,omitempty"`
	Error       *StatusError `json:"error,omitempty"`
}

// User is a customer (or, in an echo's from, the business's agent).
type User struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Username string `json:"username,omitempty"`
	Language string `json:"language,omitempty"`
}

// Attachment is a file of a message event; AddMedia makes one that
// downloads from the simulator.
type Attachment struct {
	Kind     string `json:"kind"` // image, video, audio or file
	URL      string `json:"url"`
	MimeType string `json:"mime_type,omitempty"`
	Size     int64  `json:"size,omitempty"`
	Filename string `json:"filename,omitempty"`
}

// Location is a shared point.
type Location struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

// StatusError is why a status says failed.
type StatusError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// Entry is the events of one account in a webhook body.
type Entry struct {
	Account string  `json:"account"`
	Time    int64   `json:"time"` // milliseconds; Body fills it when 0
	Events  []Event `json:"events"`
}

// Codes of a failed status (Failed), which fakechat sends after it accepted
// a message it then could not deliver.
const (
	LateWindowClosed = 131047 // the window closed before delivery
	LateBlocked      = 131026 // the customer blocked the account, or cannot receive
)

// ts is the next event time: now, and strictly after the previous one.
func (s *Server) tsLocked() int64 {
	ts := max(s.now().UnixMilli(), s.lastTS+1)
	s.lastTS = ts
	return ts
}

func (s *Server) nextID(counter *int, prefix string) (string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*counter++
	return prefix + strconv.Itoa(*counter), s.tsLocked()
}

func (s *Server) stamp() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tsLocked()
}

func ptr(u User) *User { return &u }

// Message is from's message with text and attachments (either may be
// empty), id fm_in_<n>.
func (s *Server) Message(from User, text string, attachments ...Attachment) Event {
	id, ts := s.nextID(&s.nextIn, "fm_in_")
	return Event{Type: "message", TS: ts, From: ptr(from), ID: id, Text: text, Attachments: attachments}
}

// Text is from's text message.
func (s *Server) Text(from User, text string) Event { return s.Message(from, text) }

// Location is from's shared location.
func (s *Server) Location(from User, lat, lon float64) Event {
	e := s.Message(from, "")
	e.Location = &Location{Lat: lat, Lon: lon}
	return e
}

// Edit is from's edit of their message id.
func (s *Server) Edit(from User, id, text string) Event {
	return Event{Type: "edit", TS: s.stamp(), From: ptr(from), ID: id, Text: text}
}

// Reaction is from putting emoji on message target.
func (s *Server) Reaction(from User, target, emoji string) Event {
	return Event{Type: "reaction", TS: s.stamp(), From: ptr(from), Target: target, Emoji: emoji, Action: "add"}
}

// Unreaction is from taking emoji off message target.
func (s *Server) Unreaction(from User, target, emoji string) Event {
	e := s.Reaction(from, target, emoji)
	e.Action = "remove"
	return e
}

// Postback is from pressing the button payload (titled title) of the
// business's message target, id fm_pb_<n>.
func (s *Server) Postback(from User, target, payload, title string) Event {
	id, ts := s.nextID(&s.nextPB, "fm_pb_")
	return Event{Type: "postback", TS: ts, From: ptr(from), ID: id, Target: target, Payload: payload, Title: title}
}

// Delivery says the business's messages ids reached from.
func (s *Server) Delivery(from User, ids ...string) Event {
	return Event{Type: "delivery", TS: s.stamp(), From: ptr(from), IDs: ids}
}

// Read says from read everything the business sent up to watermark.
func (s *Server) Read(from User, watermark time.Time) Event {
	return Event{Type: "read", TS: s.stamp(), From: ptr(from), Watermark: watermark.UnixMilli()}
}

// Echo is a message the business sent to customer outside Parley (from
// fakechat's own inbox), id fm_echo_<n>.
func (s *Server) Echo(to User, text string) Event {
	id, ts := s.nextID(&s.nextEcho, "fm_echo_")
	return Event{Type: "echo", TS: ts, ID: id, To: ptr(to), Text: text}
}

// EchoOf is fakechat's echo of a message the simulator accepted: every
// send is echoed, Parley's own included.
func (s *Server) EchoOf(m SentMessage) Event {
	return Event{Type: "echo", TS: s.stamp(), ID: m.ID, To: &User{ID: m.To}, Text: m.Text}
}

// Failed is the late failure of the business's message id, with code
// (LateWindowClosed, LateBlocked or any other).
func (s *Server) Failed(id string, code int, message string) Event {
	e := s.Status(id, "failed")
	e.Error = &StatusError{Code: code, Message: message}
	return e
}

// Status is a status of the business's message id: "delivered", "read" or
// "failed" (see Failed).
func (s *Server) Status(id, status string) Event {
	e := Event{Type: "status", TS: s.stamp(), ID: id, Status: status}
	if m, ok := s.SentMessage(id); ok {
		e.From = &User{ID: m.To}
	}
	return e
}
