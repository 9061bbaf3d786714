package meta

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
)

// SignatureHeader carries HMAC-SHA256(app secret, raw body) as
// "sha256=<hex>".
const SignatureHeader = "X-Hub-Signature-256"

// Errors of VerifySignature; each means the request is not Meta's.
var (
	ErrNoSignature  = errors.New("meta: no X-Hub-Signature-256 header")
	ErrBadSignature = errors.New("meta: X-Hub-Signature-256 does not match the body")
)

// VerifySignature checks header (the X-Hub-Signature-256 value) against
// the raw body bytes as received: Meta signs the bytes it sends, escaped
// unicode included, so the body must never be re-encoded first. The
// comparison is constant-time.
func VerifySignature(appSecret []byte, body []byte, header string) error {
	if header == "" {
		return ErrNoSignature
	}
	hexSum, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return ErrBadSignature
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil || len(got) != sha256.Size {
		return ErrBadSignature
	}
	if !hmac.Equal(got, Sign(appSecret, body)) {
		return ErrBadSignature
	}
	return nil
}

// Sign is HMAC-SHA256(app secret, body), the sum X-Hub-Signature-256
// carries in hex; simulators sign their pushes with it.
func Sign(appSecret, body []byte) []byte {
	m := hmac.New(sha256.New, appSecret)
	m.Write(body)
	return m.Sum(nil)
}

// SignatureValue is the X-Hub-Signature-256 header value for body.
func SignatureValue(appSecret, body []byte) string {
	return "sha256=" + hex.EncodeToString(Sign(appSecret, body))
}

// Handshake answers Meta's subscription check, a GET with hub.mode,
// hub.verify_token and hub.challenge: it returns the challenge to echo
// (with 200) when the mode is "subscribe" and the token matches, compared
// in constant time; ok false means answer 403.
func Handshake(q url.Values, verifyToken string) (challenge string, ok bool) {
	if verifyToken == "" || q.Get("hub.mode") != "subscribe" {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(q.Get("hub.verify_token")), []byte(verifyToken)) != 1 {
		return "", false
	}
	return q.Get("hub.challenge"), true
}

// AppSecretProof is the appsecret_proof Graph calls carry with an access
// token: HMAC-SHA256(app secret, token) in hex, so a leaked token alone
// cannot be used from elsewhere.
func AppSecretProof(appSecret, accessToken string) string {
	return hex.EncodeToString(Sign([]byte(appSecret), []byte(accessToken)))
}
