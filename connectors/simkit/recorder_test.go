package simkit_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parley-gateway/parley/connectors/simkit"
)

func TestRecorderWrapKeepsTheBodyForTheHandler(t *testing.T) {
	rec := simkit.NewRecorder(0, func() time.Time { return t0 })
	var seen string
	srv := httptest.NewServer(rec.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen = string(b)
	})))
	t.Cleanup(srv.Close)

	resp, err := http.Post(srv.URL+"/v1/acct/messages?x=1", "application/json", strings.NewReader(`{"to":"c1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if seen != `{"to":"c1"}` {
		t.Fatalf("handler read %q", seen)
	}
	got := rec.Requests()
	if len(got) != 1 {
		t.Fatalf("recorded %d requests", len(got))
	}
	r := got[0]
	if r.Method != "POST" || r.Path != "/v1/acct/messages" || r.Query.Get("x") != "1" ||
		string(r.Body) != `{"to":"c1"}` || r.Header.Get("Content-Type") != "application/json" || !r.Time.Equal(t0) {
		t.Fatalf("recorded %+v", r)
	}
}

func TestRecorderIsBounded(t *testing.T) {
	rec := simkit.NewRecorder(3, nil)
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e"} {
		rec.Record(httptest.NewRequest("GET", p, nil), nil)
	}
	got := rec.Requests()
	if len(got) != 3 || got[0].Path != "/c" || got[2].Path != "/e" {
		t.Fatalf("kept %v", got)
	}
	if rec.Dropped() != 2 {
		t.Fatalf("Dropped() = %d, want 2", rec.Dropped())
	}
	big := make([]byte, simkit.MaxRecordedBody+1)
	rec.Record(httptest.NewRequest("POST", "/big", nil), big)
	last := rec.Requests()[2]
	if !last.Truncated || len(last.Body) != simkit.MaxRecordedBody {
		t.Fatalf("a big body was kept whole: %d bytes, truncated %v", len(last.Body), last.Truncated)
	}
	rec.Reset()
	if rec.Count(nil) != 0 || rec.Dropped() != 0 {
		t.Fatal("Reset kept something")
	}
}

func TestRecorderFilterAndWait(t *testing.T) {
	rec := simkit.NewRecorder(0, nil)
	rec.Record(httptest.NewRequest("GET", "/media/1", nil), nil)
	rec.Record(httptest.NewRequest("POST", "/v1/a/messages", nil), nil)
	if n := rec.Count(simkit.Match("POST", "/v1/")); n != 1 {
		t.Fatalf("Count(POST /v1/) = %d", n)
	}
	if n := rec.Count(simkit.Match("", "/")); n != 2 {
		t.Fatalf("Count(any /) = %d", n)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	done := make(chan []simkit.Request)
	go func() {
		got, _ := rec.Wait(ctx, 2, simkit.Match("POST", "/v1/"))
		done <- got
	}()
	rec.Record(httptest.NewRequest("POST", "/v1/b/messages", nil), nil)
	if got := <-done; len(got) != 2 {
		t.Fatalf("Wait returned %d requests", len(got))
	}

	short, cancelShort := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancelShort()
	if _, err := rec.Wait(short, 10, nil); err == nil {
		t.Fatal("Wait returned without enough requests")
	}
}
