package bus_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/parley-gateway/parley/internal/bus"
)

var (
	tokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// The KV key grammar of nats.go (kv.go validKeyRe), without leading,
	// trailing or doubled dots.
	kvKeyRe = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)
)

func TestToken(t *testing.T) {
	long := strings.Repeat("x", 65)
	tests := []struct {
		name string
		in   string
		want string // "" means: only check the shape
		pfx  string
	}{
		{name: "conversation id passes through", in: "c_9f3a-Zk", want: "c_9f3a-Zk"},
		{name: "negative telegram chat id passes through", in: "-1001234567890", want: "-1001234567890"},
		{name: "slack channel passes through", in: "C0ABC", want: "C0ABC"},
		{name: "64 safe characters pass through", in: strings.Repeat("a", 64), want: strings.Repeat("a", 64)},
		{name: "leading underscore is escaped so raw and escaped never collide", in: "_bAA", pfx: "_b"},
		{name: "lone underscore is escaped", in: "_", want: "_bXw"},
		{name: "dots are escaped", in: "1712345678.123456", pfx: "_b"},
		{name: "plus and equals are escaped", in: "+4915112345678", pfx: "_b"},
		{name: "wamid with dots and equals is escaped", in: "wamid.HBgNNDkxNTExMjM0NTY3OBUCABIYFjNFQjBDNzA5QkYxRjRBMkQ2RkUA", pfx: "_h"},
		{name: "wildcards are escaped", in: "a*b>", want: "_bYSpiPg"},
		{name: "empty is escaped", in: "", want: "_b"},
		{name: "65 safe characters are hashed", in: long, pfx: "_h"},
		{name: "unicode is escaped", in: "Maria López", pfx: "_b"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := bus.Token(tc.in)
			if !tokenRe.MatchString(got) {
				t.Fatalf("Token(%q) = %q, not a safe token", tc.in, got)
			}
			if tc.want != "" && got != tc.want {
				t.Errorf("Token(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if tc.pfx != "" && !strings.HasPrefix(got, tc.pfx) {
				t.Errorf("Token(%q) = %q, want prefix %q", tc.in, got, tc.pfx)
			}
			if again := bus.Token(tc.in); again != got {
				t.Errorf("Token(%q) not deterministic: %q then %q", tc.in, got, again)
			}
		})
	}
	if bus.Token(long) != "_h"+bus.Token(long)[2:] || len(bus.Token(long)) != 34 {
		t.Errorf("hashed token %q: want _h + 32 characters", bus.Token(long))
	}
	if bus.Token("a.b") == bus.Token("a_b") || bus.Token(long) == bus.Token(long+"y") {
		t.Error("distinct values share a token")
	}
}

func TestSubjects(t *testing.T) {
	s := bus.Subjects{Prefix: "parley"}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"event", s.Event("eu", "telegram", "tg-eu", "c_abc", "message"), "parley.evt.eu.telegram.tg-eu.c_abc.message"},
		{"connector-level event uses _", s.Event("eu", "telegram", "tg-eu", "", "connector"), "parley.evt.eu.telegram.tg-eu._.connector"},
		{"command", s.Command("eu", "slack", "sl-1", "c_x"), "parley.cmd.eu.slack.sl-1.c_x.send"},
		{"dlq", s.DLQ("latam", "messenger", "fb-latam", "c_y"), "parley.dlq.latam.messenger.fb-latam.c_y"},
		{"inbound dlq", s.InboundDLQ("eu", "telegram", "tg-eu"), "parley.dlq.eu.telegram.tg-eu._.inbound"},
		{"media job", s.MediaJob("eu", "whatsapp", "wa-1", "c_z"), "parley.media.eu.whatsapp.wa-1.c_z"},
		{"events filter", s.Events("eu"), "parley.evt.eu.>"},
		{"commands filter", s.Commands("eu"), "parley.cmd.eu.>"},
		{"dlq filter", s.DLQs("eu"), "parley.dlq.eu.>"},
		{"one connector's commands", s.ConnectorCommands("eu", "tg-1"), "parley.cmd.eu.*.tg-1.*.send"},
		{"media filter", s.MediaJobs("eu"), "parley.media.eu.>"},
		{"zero prefix is parley", bus.Subjects{}.Events("us"), "parley.evt.us.>"},
		{"custom prefix", bus.Subjects{Prefix: "acme"}.Command("eu", "telegram", "tg", "c_1"), "acme.cmd.eu.telegram.tg.c_1.send"},
		{"unsafe conversation cannot add tokens", s.Event("eu", "slack", "sl", "a.b.>", "message"), "parley.evt.eu.slack.sl." + bus.Token("a.b.>") + ".message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestParseSubject(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		want    bus.SubjectInfo
		wantErr bool
	}{
		{
			name:    "event",
			subject: "parley.evt.eu.telegram.tg-eu.c_abc.message",
			want:    bus.SubjectInfo{Prefix: "parley", Class: bus.ClassEvent, Region: "eu", Platform: "telegram", Connector: "tg-eu", Conversation: "c_abc", Kind: "message"},
		},
		{
			name:    "connector-level event has no conversation",
			subject: "parley.evt.eu.telegram.tg-eu._.connector",
			want:    bus.SubjectInfo{Prefix: "parley", Class: bus.ClassEvent, Region: "eu", Platform: "telegram", Connector: "tg-eu", Kind: "connector"},
		},
		{
			name:    "command",
			subject: "parley.cmd.eu.slack.sl-1.c_x.send",
			want:    bus.SubjectInfo{Prefix: "parley", Class: bus.ClassCommand, Region: "eu", Platform: "slack", Connector: "sl-1", Conversation: "c_x", Kind: "send"},
		},
		{
			name:    "dlq",
			subject: "parley.dlq.latam.messenger.fb-latam.c_y",
			want:    bus.SubjectInfo{Prefix: "parley", Class: bus.ClassDLQ, Region: "latam", Platform: "messenger", Connector: "fb-latam", Conversation: "c_y"},
		},
		{
			name:    "inbound dlq",
			subject: "parley.dlq.eu.telegram.tg-eu._.inbound",
			want:    bus.SubjectInfo{Prefix: "parley", Class: bus.ClassDLQ, Region: "eu", Platform: "telegram", Connector: "tg-eu", Kind: bus.InboundKind},
		},
		{
			name:    "inbound dlq with a multi-token prefix",
			subject: "acme.parley.dlq.eu.telegram.tg-eu._.inbound",
			want:    bus.SubjectInfo{Prefix: "acme.parley", Class: bus.ClassDLQ, Region: "eu", Platform: "telegram", Connector: "tg-eu", Kind: bus.InboundKind},
		},
		{
			name:    "media job",
			subject: "parley.media.eu.whatsapp.wa-1.c_z",
			want:    bus.SubjectInfo{Prefix: "parley", Class: bus.ClassMediaJob, Region: "eu", Platform: "whatsapp", Connector: "wa-1", Conversation: "c_z"},
		},
		{
			name:    "multi-token prefix",
			subject: "acme.parley.evt.eu.telegram.tg.c_1.reaction",
			want:    bus.SubjectInfo{Prefix: "acme.parley", Class: bus.ClassEvent, Region: "eu", Platform: "telegram", Connector: "tg", Conversation: "c_1", Kind: "reaction"},
		},
		{name: "command without send", subject: "parley.cmd.eu.slack.sl-1.c_x.react", wantErr: true},
		{name: "too short", subject: "parley.evt.eu.telegram", wantErr: true},
		{name: "unknown class", subject: "parley.foo.eu.telegram.tg.c_1.message", wantErr: true},
		{name: "no prefix", subject: "evt.eu.telegram.tg.c_1.message", wantErr: true},
		{name: "empty token", subject: "parley.evt.eu..tg.c_1.message", wantErr: true},
		{name: "wildcard", subject: "parley.evt.eu.*.tg.c_1.message", wantErr: true},
		{name: "full wildcard", subject: "parley.evt.eu.>", wantErr: true},
		{name: "whitespace", subject: "parley.evt.eu.telegram.tg.c 1.message", wantErr: true},
		{name: "empty", subject: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bus.ParseSubject(tc.subject)
			if tc.wantErr {
				if !errors.Is(err, bus.ErrBadSubject) {
					t.Fatalf("ParseSubject(%q) = %+v, %v; want ErrBadSubject", tc.subject, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSubject(%q): %v", tc.subject, err)
			}
			if got != tc.want {
				t.Errorf("ParseSubject(%q) = %+v, want %+v", tc.subject, got, tc.want)
			}
		})
	}

	t.Run("round trip through the builders", func(t *testing.T) {
		s := bus.Subjects{Prefix: "parley"}
		for _, subj := range []string{
			s.Event("eu", "telegram", "tg", "c_1", "message"),
			s.Event("eu", "telegram", "tg", "", "connector"),
			s.Command("eu", "telegram", "tg", "c_1"),
			s.DLQ("eu", "telegram", "tg", "c_1"),
			s.MediaJob("eu", "telegram", "tg", "c_1"),
		} {
			info, err := s.Parse(subj)
			if err != nil {
				t.Fatalf("Parse(%q): %v", subj, err)
			}
			if info.Region != "eu" || info.Platform != "telegram" || info.Connector != "tg" {
				t.Errorf("Parse(%q) = %+v", subj, info)
			}
		}
	})
	t.Run("Subjects.Parse rejects another prefix", func(t *testing.T) {
		_, err := bus.Subjects{Prefix: "parley"}.Parse("acme.evt.eu.telegram.tg.c_1.message")
		if !errors.Is(err, bus.ErrBadSubject) {
			t.Fatalf("got %v, want ErrBadSubject", err)
		}
	})
}

func TestNames(t *testing.T) {
	tests := []struct{ got, want string }{
		{bus.StreamName(bus.StreamEvents, "eu"), "PARLEY_EVT_EU"},
		{bus.StreamName("cmd", "eu-west"), "PARLEY_CMD_EU_WEST"},
		{bus.StreamName(bus.StreamDLQ, "latam"), "PARLEY_DLQ_LATAM"},
		{bus.StreamName(bus.StreamMedia, "ap-south-1"), "PARLEY_MEDIA_AP_SOUTH_1"},
		{bus.BucketName(bus.BucketLeases, "eu-west"), "parley_leases_eu-west"},
		{bus.BucketName(bus.BucketDirectory, "eu"), "parley_directory_eu"},
		{bus.BucketName(bus.BucketMedia, "us"), "parley_media_us"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestLeaseKey(t *testing.T) {
	tests := []struct {
		parts []string
		want  string
	}{
		{[]string{"whatsapp", "wa-eu"}, "whatsapp.wa-eu"},
		{[]string{"telegram", "123456:ABC"}, "telegram." + bus.Token("123456:ABC")},
		{[]string{"whatsapp", "+4915112345678@s.whatsapp.net"}, "whatsapp." + bus.Token("+4915112345678@s.whatsapp.net")},
		{[]string{"x"}, "x"},
	}
	for _, tc := range tests {
		got := bus.LeaseKey(tc.parts...)
		if got != tc.want {
			t.Errorf("LeaseKey(%q) = %q, want %q", tc.parts, got, tc.want)
		}
		if !kvKeyRe.MatchString(got) {
			t.Errorf("LeaseKey(%q) = %q, not a valid KV key", tc.parts, got)
		}
	}
}
