package config

import (
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationDecodes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"2h", 2 * time.Hour},
		{"90s", 90 * time.Second},
		{"1h30m", 90 * time.Minute},
		{"100ms", 100 * time.Millisecond},
		{"0", 0},
		{"7d", 7 * 24 * time.Hour},
		{"0d", 0},
		{"1d12h", 36 * time.Hour},
		{"30d", 30 * 24 * time.Hour},
	} {
		var v struct{ D Duration }
		if err := yaml.Unmarshal([]byte("d: "+tc.in), &v); err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if v.D.Duration() != tc.want {
			t.Errorf("%q = %v, want %v", tc.in, v.D.Duration(), tc.want)
		}
	}
}

func TestDurationRejectsAmbiguousOrMalformedValues(t *testing.T) {
	for _, in := range []string{
		"7", "2.5", "d", "1.5d", "-1d", "+1d", "1d-2h", "1d+2h", "1dd", "1d2", "two hours", "''",
		"[1h]", "999999999999999d",
	} {
		var v struct{ D Duration }
		if err := yaml.Unmarshal([]byte("d: "+in), &v); err == nil {
			t.Errorf("%s decoded as %v, want an error", in, v.D)
		}
	}
}

func TestDurationEncodesAsText(t *testing.T) {
	out, err := yaml.Marshal(struct{ D Duration }{Duration(90 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "d: 1h30m0s\n" {
		t.Errorf("encoded %q", out)
	}
}
