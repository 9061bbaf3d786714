package secret

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// xmlHolder is named because encoding/xml needs a name for the element.
type xmlHolder struct{ Token String }

func TestSecretIsNeverPrinted(t *testing.T) {
	const value = "hunter2"
	s := String(value)
	type holder struct {
		Token  String
		Ptr    *String
		Tokens []String
		Map    map[string]String
	}
	h := holder{Token: s, Ptr: &s, Tokens: []String{s}, Map: map[string]String{"k": s}}

	mustMarshal := func(b []byte, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	logged := func(h slog.Handler, buf *bytes.Buffer) string {
		l := slog.New(h)
		l.Info("starting", "token", s, "holder", h)
		l.Info("group", slog.Group("nats", "password", s), slog.Any("any", s))
		return buf.String()
	}
	var textBuf, jsonBuf bytes.Buffer
	forms := map[string]string{
		"%v":                fmt.Sprintf("%v", s),
		"%s":                fmt.Sprintf("%s", s),
		"%+v":               fmt.Sprintf("%+v", s),
		"%#v":               fmt.Sprintf("%#v", s),
		"%q":                fmt.Sprintf("%q", s),
		"%x":                fmt.Sprintf("%x", s),
		"%X":                fmt.Sprintf("%X", s),
		"%10.3s":            fmt.Sprintf("%10.3s", s),
		"%d":                fmt.Sprintf("%d", s),
		"Sprint":            fmt.Sprint(s),
		"Sprintln":          fmt.Sprintln(s, &s),
		"pointer %v":        fmt.Sprintf("%v", &s),
		"struct %v":         fmt.Sprintf("%v", h),
		"struct %+v":        fmt.Sprintf("%+v", h),
		"struct %#v":        fmt.Sprintf("%#v", h),
		"error":             fmt.Errorf("connecting with %v: %w", s, errors.New("refused")).Error(),
		"String":            s.String(),
		"GoString":          s.GoString(),
		"json":              mustMarshal(json.Marshal(s)),
		"json struct":       mustMarshal(json.Marshal(h)),
		"yaml struct":       mustMarshal(yaml.Marshal(h)),
		"xml":               mustMarshal(xml.Marshal(xmlHolder{Token: s})),
		"slog text handler": logged(slog.NewTextHandler(&textBuf, nil), &textBuf),
		"slog json handler": logged(slog.NewJSONHandler(&jsonBuf, nil), &jsonBuf),
	}
	for name, out := range forms {
		if strings.Contains(out, value) {
			t.Errorf("%s prints the secret: %s", name, out)
		}
		if !strings.Contains(out, Redacted) {
			t.Errorf("%s does not say [redacted]: %s", name, out)
		}
	}
	if got := s.Reveal(); got != value {
		t.Errorf("Reveal() = %q, want %q", got, value)
	}
}

func TestEmptySecretPrintsEmpty(t *testing.T) {
	var s String
	for _, tc := range []struct{ name, got, want string }{
		{"%v", fmt.Sprintf("%v", s), ""},
		{"%s", fmt.Sprintf("[%s]", s), "[]"},
		{"%#v", fmt.Sprintf("%#v", s), `""`},
		{"json", func() string { b, _ := json.Marshal(s); return string(b) }(), `""`},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

func TestSecretDecodesFromAnyScalar(t *testing.T) {
	var v struct {
		A, B, C String
		D       String
	}
	if err := yaml.Unmarshal([]byte("a: text\nb: 0123\nc: 'true'\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.A.Reveal() != "text" || v.B.Reveal() != "0123" || v.C.Reveal() != "true" || v.D != "" {
		t.Errorf("decoded %q %q %q %q", v.A.Reveal(), v.B.Reveal(), v.C.Reveal(), v.D.Reveal())
	}
	if err := yaml.Unmarshal([]byte("a: [x]\n"), &v); err == nil {
		t.Error("a list decoded into a String")
	}
}
