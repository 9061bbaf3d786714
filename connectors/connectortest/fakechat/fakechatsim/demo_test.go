package fakechatsim_test

import (
	"encoding/json"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/parley-gateway/parley/connectors/connectortest/fakechat/fakechatsim"
	"github.com/parley-gateway/parley/connectors/simkit"
)

func TestDemoDrivesTheSimulator(t *testing.T) {
	d, err := fakechatsim.NewDemo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)

	var settings struct {
		AppSecret   string `yaml:"app_secret"`
		VerifyToken string `yaml:"verify_token"`
		Accounts    []struct {
			ID          string `yaml:"id"`
			AccessToken string `yaml:"access_token"`
		} `yaml:"accounts"`
		APIURL string `yaml:"api_url"`
	}
	dec := yaml.NewDecoder(strings.NewReader(d.Settings()))
	dec.KnownFields(true)
	if err := dec.Decode(&settings); err != nil {
		t.Fatalf("settings %q: %v", d.Settings(), err)
	}
	if len(settings.Accounts) != 1 || !strings.HasPrefix(settings.APIURL, "http://127.0.0.1:") || settings.AppSecret == "" {
		t.Fatalf("settings %+v", settings)
	}

	r := newReceiver(t, settings.AppSecret)
	d.Attach(r.srv.URL)
	c := simkit.Customer{Key: 1, Name: "María", Username: "maria", Language: "es"}
	id, err := d.Text(ctx(t), c, "Hola")
	if err != nil || id == "" {
		t.Fatalf("Text: %q %v", id, err)
	}
	if _, err := d.Photo(ctx(t), c, "the box", []byte("png")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Location(ctx(t), c, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := d.Edit(ctx(t), c, id, "Hola!"); err != nil {
		t.Fatal(err)
	}
	bodies, valid := r.got()
	if len(bodies) != 4 || !valid[0] || !strings.Contains(string(bodies[1]), `"kind":"image"`) {
		t.Fatalf("pushed %d bodies, valid %v", len(bodies), valid)
	}

	// The business answers with buttons, as the connector would.
	status, _, body := send(t, settings.APIURL, settings.Accounts[0].ID, settings.Accounts[0].AccessToken,
		`{"to":"cust_1","text":"Pick one","choices":[{"id":"yes","title":"Yes"}]}`)
	if status != 200 {
		t.Fatalf("send: %d %v", status, body)
	}
	sent := d.Sent(c)
	if len(sent) != 1 || sent[0].Text != "Pick one" || sent[0].Markup != "Pick one" || len(sent[0].Choices) != 1 || sent[0].Choices[0] != "yes" {
		t.Fatalf("Sent = %+v", sent)
	}
	if err := d.React(ctx(t), c, sent[0].PlatformID, "👍"); err != nil {
		t.Fatal(err)
	}
	if err := d.Press(ctx(t), c, sent[0].PlatformID, "yes"); err != nil {
		t.Fatal(err)
	}
	bodies, _ = r.got()
	var pb struct {
		Entry []struct {
			Events []map[string]any `json:"events"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(bodies[len(bodies)-1], &pb); err != nil {
		t.Fatal(err)
	}
	if ev := pb.Entry[0].Events[0]; ev["type"] != "postback" || ev["payload"] != "yes" || ev["title"] != "Yes" || ev["target"] != sent[0].PlatformID {
		t.Fatalf("postback %v", ev)
	}
	if err := d.Press(ctx(t), c, sent[0].PlatformID, "no"); err == nil {
		t.Fatal("pressed a button the message does not have")
	}

	d.FailNextSend(simkit.FailRateLimited)
	d.FailNextSend(simkit.FailUnavailable)
	msg := `{"to":"cust_1","text":"again"}`
	if status, h, _ := send(t, settings.APIURL, settings.Accounts[0].ID, settings.Accounts[0].AccessToken, msg); status != 429 || h.Get("Retry-After") != "1" {
		t.Fatalf("FailRateLimited: %d %q", status, h.Get("Retry-After"))
	}
	if status, _, _ := send(t, settings.APIURL, settings.Accounts[0].ID, settings.Accounts[0].AccessToken, msg); status != 503 {
		t.Fatalf("FailUnavailable: %d", status)
	}
	d.Block(c)
	if status, _, body := send(t, settings.APIURL, settings.Accounts[0].ID, settings.Accounts[0].AccessToken, msg); status != 403 || errorCode(body) != fakechatsim.CodeBlocked {
		t.Fatalf("blocked: %d %v", status, body)
	}
	if d.PressesAnswered() != -1 {
		t.Fatal("fakechat has no press follow-ups")
	}
}
