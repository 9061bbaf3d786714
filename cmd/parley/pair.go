package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/mdp/qrterminal/v3"

	"github.com/parley-gateway/parley/connectors"
	"github.com/parley-gateway/parley/normalize"
)

// e164 is a phone number in E.164 form.
var e164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// runPair links a device session for a connector whose platform has one
// (connectors.Pairer). It needs no NATS and no running gateway: the session
// is stored under the connector's data directory, where Run finds it; a
// running gateway picks it up on SIGHUP (a connector stopped as logged out
// resumes).
func runPair(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "pair", "pair <platform> --connector ID [--phone +E164] [--config FILE]")
	cfgPath := configFlag(fs, env)
	id := fs.String("connector", "", "the `ID` of the connector to pair")
	phone := fs.String("phone", "", "ask for a pairing code for this phone `number` (+E.164) instead of a QR code")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("pair needs one platform, e.g. parley pair whatsapp --connector wa-eu")
	}
	platform := fs.Arg(0)
	if *id == "" {
		return usagef("--connector is required")
	}
	if *phone != "" && !e164.MatchString(*phone) {
		return usagef("--phone %q is not an E.164 number such as +34600111222", *phone)
	}
	p, ok := env.registry().Lookup(platform)
	if !ok {
		return usagef("platform %q is not built into this binary (it has: %s)", platform, strings.Join(env.registry().Names(), ", "))
	}
	cfg, err := loadConfig(ctx, env, *cfgPath)
	if err != nil {
		return err
	}
	var found bool
	var region string
	var settings connectors.Settings
	for _, c := range cfg.Connectors {
		if c.ID == *id {
			if c.Platform != platform {
				return usagef("connector %s is a %s connector, not %s", c.ID, c.Platform, platform)
			}
			found, region, settings = true, c.Region, c
		}
	}
	if !found {
		return usagef("no connector %q in %s", *id, *cfgPath)
	}

	log := newLogger(env.stderr, cfg.Log).With("connector", *id, "platform", platform, "region", region)
	off := offline{}
	conn, err := p.New(connectors.Deps{
		ID: *id, Platform: platform, Region: region, Logger: log,
		Publisher: off, Rejects: off, Cursors: off, Conversations: off, Ledger: off, Media: off,
		HTTPClient: &http.Client{Timeout: time.Minute},
		DataDir:    filepath.Join(cfg.DataDir, "connectors", *id),
		Now:        time.Now,
		OnHealth:   func(connectors.Health) {},
	}, settings)
	if err != nil {
		return usagef("connector %s: %v", *id, err)
	}
	pairer, ok := conn.(connectors.Pairer)
	if !ok {
		return usagef("%s connectors link without a device: there is nothing to pair", p.Name)
	}
	err = pairer.Pair(ctx, connectors.PairRequest{Phone: *phone, Show: func(pp connectors.PairPrompt) { showPrompt(env.stdout, p.Name, pp) }})
	if err != nil {
		return fmt.Errorf("pairing %s: %w", *id, err)
	}
	fmt.Fprintf(env.stdout, "Paired. Connector %s will use this session; send SIGHUP to a running `parley serve` (or start it) to resume it.\n", *id)
	return nil
}

// showPrompt prints a QR code to scan, or a code to type, and how long it
// lasts.
func showPrompt(w io.Writer, platform string, pp connectors.PairPrompt) {
	expires := ""
	if !pp.Expires.IsZero() {
		expires = fmt.Sprintf(" (valid until %s)", pp.Expires.Local().Format(time.TimeOnly))
	}
	switch {
	case pp.Code != "":
		fmt.Fprintf(w, "On the phone, open %s → Linked devices → Link with phone number, and type: %s%s\n", platform, pp.Code, expires)
	case pp.QR != "":
		fmt.Fprintf(w, "Scan this code with %s → Linked devices%s:\n", platform, expires)
		qrterminal.GenerateHalfBlock(pp.QR, qrterminal.L, w)
	}
}

// offline is every Deps dependency a connector may not use while pairing:
// nothing is stored, so each refuses plainly instead of pretending.
type offline struct{}

var errOffline = fmt.Errorf("not available while pairing (parley serve stores events): %w", connectors.ErrNotDurable)

func (offline) Publish(context.Context, ...*normalize.Event) error { return errOffline }
func (offline) Reject(context.Context, connectors.Rejected) error  { return errOffline }
func (offline) Get(context.Context, string) ([]byte, error)        { return nil, errOffline }
func (offline) Put(context.Context, string, []byte) error          { return errOffline }
func (offline) SetReachable(context.Context, normalize.ConversationID, bool, string) error {
	return errOffline
}
func (offline) Sent(context.Context, string) (connectors.SentMessage, error) {
	return connectors.SentMessage{}, errOffline
}
func (offline) SentUntil(context.Context, normalize.ConversationID, time.Time) ([]connectors.SentMessage, error) {
	return nil, errOffline
}
func (offline) ReportLateFailure(context.Context, connectors.SentMessage, normalize.ReplyError) error {
	return errOffline
}
func (offline) OpenMedia(context.Context, normalize.MediaID) (io.ReadCloser, connectors.MediaInfo, error) {
	return nil, connectors.MediaInfo{}, errOffline
}
