// Command webhook is a remediation plugin that POSTs the incident as JSON
// to a URL: a notifier step in a ladder ("tell the on-call bot before
// restarting the agent") or a hook into another automation system.
//
// Every request carries
//
//	Content-Type: application/json
//	X-Medic-Delivery:  <incident id>/<step>/<attempt>  (an idempotency key)
//	X-Medic-Timestamp: <unix seconds>
//	X-Medic-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>  (when a secret is set)
//
// A receiver verifies the signature over the timestamp and the raw body
// and rejects stale timestamps. Network errors, 408, 429 and 5xx answers
// are retried with exponential backoff (Retry-After honoured) as long as
// the next try fits in the attempt's deadline; other 4xx answers are
// permanent errors.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-retry"

	"github.com/medic-sidecar/medic/plugins/sdk"
)

// Version is the plugin's version.
const Version = "1.0.0"

// Header names.
const (
	HeaderSignature = "X-Medic-Signature"
	HeaderTimestamp = "X-Medic-Timestamp"
	HeaderDelivery  = "X-Medic-Delivery"
)

// Config is the action's plugin config.
type Config struct {
	// URL receives the POST (http or https).
	URL string `json:"url"`
	// Secret is the HMAC-SHA256 key; prefer SecretFile or SecretEnv.
	Secret string `json:"secret,omitempty"`
	// SecretFile holds the key (trailing newline ignored).
	SecretFile string `json:"secretFile,omitempty"`
	// SecretEnv names an environment variable of the plugin holding the key
	// (set it with plugins.<name>.env).
	SecretEnv string `json:"secretEnv,omitempty"`
	// Headers are added to every request.
	Headers map[string]string `json:"headers,omitempty"`
	// Retries is the number of requests per attempt, at most (default 3).
	Retries int `json:"retries,omitempty"`
	// InitialBackoff is the first wait between requests ("500ms" by
	// default); it doubles, capped at MaxBackoff.
	InitialBackoff string `json:"initialBackoff,omitempty"`
	// MaxBackoff caps the wait between requests ("10s" by default).
	MaxBackoff string `json:"maxBackoff,omitempty"`
	// RequestTimeout bounds one request ("10s" by default); the attempt's
	// deadline bounds them all.
	RequestTimeout string `json:"requestTimeout,omitempty"`

	initialBackoff, maxBackoff, requestTimeout time.Duration
}

func defaults() Config {
	return Config{Retries: 3, InitialBackoff: "500ms", MaxBackoff: "10s", RequestTimeout: "10s"}
}

// duration parses a positive Go duration at path.
func duration(path, s string, out *time.Duration) error {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return sdk.Errorf(path, "must be a positive duration like \"500ms\", got %q", s)
	}
	*out = d
	return nil
}

// Payload is the JSON body of every request.
type Payload struct {
	// Event is always "remediation".
	Event    string       `json:"event"`
	Incident sdk.Incident `json:"incident"`
	// Plugin is the name medic knows the plugin by (plugins.<name>).
	Plugin string    `json:"plugin"`
	SentAt time.Time `json:"sentAt"`
}

type webhook struct {
	client *http.Client
	now    func() time.Time
	getenv func(string) string
}

func (w *webhook) Info() sdk.Info {
	return sdk.Info{
		Name:         "webhook",
		Version:      Version,
		Description:  "POSTs the incident as JSON, HMAC-SHA256 signed, with retries within the attempt's deadline",
		ConfigSchema: json.RawMessage(schema),
	}
}

const schema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["url"],
  "additionalProperties": false,
  "properties": {
    "url": {"type": "string", "format": "uri"},
    "secret": {"type": "string"},
    "secretFile": {"type": "string"},
    "secretEnv": {"type": "string"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "retries": {"type": "integer", "minimum": 1, "maximum": 20, "default": 3},
    "initialBackoff": {"type": "string", "default": "500ms"},
    "maxBackoff": {"type": "string", "default": "10s"},
    "requestTimeout": {"type": "string", "default": "10s"}
  }
}`

// load decodes and checks the config and reads the secret.
func (w *webhook) load(raw json.RawMessage) (Config, []byte, error) {
	c := defaults()
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, nil, err
	}
	var errs []error
	if c.URL == "" {
		errs = append(errs, sdk.Errorf("url", "is required"))
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, sdk.Errorf("url", "must be an http:// or https:// URL, got %q", c.URL))
	}
	set := 0
	for _, s := range []string{c.Secret, c.SecretFile, c.SecretEnv} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		errs = append(errs, sdk.Errorf("secret", "set at most one of secret, secretFile, secretEnv"))
	}
	var secret []byte
	switch {
	case c.Secret != "":
		secret = []byte(c.Secret)
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if secret = bytes.TrimRight(b, "\r\n"); err != nil {
			errs = append(errs, sdk.Errorf("secretFile", "%v", err))
		} else if len(secret) == 0 {
			errs = append(errs, sdk.Errorf("secretFile", "%s is empty", c.SecretFile))
		}
	case c.SecretEnv != "":
		if secret = []byte(w.getenv(c.SecretEnv)); len(secret) == 0 {
			errs = append(errs, sdk.Errorf("secretEnv", "environment variable %s is empty or unset in the plugin", c.SecretEnv))
		}
	}
	if c.Retries < 1 || c.Retries > 20 {
		errs = append(errs, sdk.Errorf("retries", "must be between 1 and 20, got %d", c.Retries))
	}
	errs = append(errs,
		duration("initialBackoff", c.InitialBackoff, &c.initialBackoff),
		duration("maxBackoff", c.MaxBackoff, &c.maxBackoff),
		duration("requestTimeout", c.RequestTimeout, &c.requestTimeout))
	if c.maxBackoff > 0 && c.maxBackoff < c.initialBackoff {
		errs = append(errs, sdk.Errorf("maxBackoff", "must not be less than initialBackoff (%s)", c.InitialBackoff))
	}
	for k := range c.Headers {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Type", HeaderSignature, HeaderTimestamp, HeaderDelivery:
			errs = append(errs, sdk.Errorf("headers."+k, "is set by the plugin"))
		}
	}
	return c, secret, errors.Join(errs...)
}

func (w *webhook) Validate(_ context.Context, raw json.RawMessage) error {
	_, _, err := w.load(raw)
	return err
}

// Sign returns the X-Medic-Signature value for body sent at ts.
func Sign(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// errPermanent marks an answer that retrying cannot change.
type errPermanent struct{ error }

func (w *webhook) Remediate(ctx context.Context, inc sdk.Incident, raw json.RawMessage) (sdk.Result, error) {
	c, secret, err := w.load(raw)
	if err != nil {
		return sdk.Result{}, sdk.Permanent(fmt.Errorf("config: %w", err))
	}
	body, err := json.Marshal(Payload{Event: "remediation", Incident: inc, Plugin: w.getenv("MEDIC_PLUGIN_NAME"), SentAt: w.now().UTC()})
	if err != nil {
		return sdk.Result{}, sdk.Permanent(err)
	}
	delivery := fmt.Sprintf("%s/%d/%d", inc.ID, inc.Step, inc.Attempt)
	b := retry.WithCappedDuration(c.maxBackoff, retry.WithJitterPercent(10, retry.NewExponential(c.initialBackoff)))
	details := map[string]any{"url": redact(c.URL), "delivery": delivery}
	var lastErr error
	tries := 0
	for tries < c.Retries {
		tries++
		status, wait, err := w.post(ctx, c, secret, delivery, body)
		details["requests"], details["status"] = tries, status
		if err == nil {
			return sdk.Result{Message: fmt.Sprintf("POST %s: %d after %d request(s)", redact(c.URL), status, tries), Details: details}, nil
		}
		lastErr = err
		var perm errPermanent
		if errors.As(err, &perm) {
			return sdk.Result{Details: details}, sdk.Permanent(err)
		}
		if tries == c.Retries {
			break
		}
		d, _ := b.Next()
		d = max(d, wait) // Retry-After
		if dl, ok := ctx.Deadline(); ok && w.now().Add(d).After(dl) {
			lastErr = fmt.Errorf("%w; no time left for another request before the deadline", err)
			break
		}
		sdk.Logger().Warn("webhook request failed; retrying", "url", redact(c.URL), "request", tries, "in", d.String(), "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return sdk.Result{Details: details}, fmt.Errorf("%w (after %d request(s), last: %v)", ctx.Err(), tries, lastErr)
		case <-t.C:
		}
	}
	return sdk.Result{Details: details}, fmt.Errorf("POST %s failed after %d request(s): %w", redact(c.URL), tries, lastErr)
}

// post sends one request. It returns the status, the server's Retry-After
// wish, and an error (errPermanent when retrying cannot help).
func (w *webhook) post(ctx context.Context, c Config, secret []byte, delivery string, body []byte) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, errPermanent{err}
	}
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "medic-webhook-plugin/"+Version)
	req.Header.Set(HeaderDelivery, delivery)
	req.Header.Set(HeaderTimestamp, ts)
	if len(secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(secret, ts, body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return code, 0, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return code, retryAfter(resp.Header.Get("Retry-After")), fmt.Errorf("server answered %s: %s", resp.Status, oneLine(snippet))
	default:
		return code, 0, errPermanent{fmt.Errorf("server answered %s: %s", resp.Status, oneLine(snippet))}
	}
}

// retryAfter reads a Retry-After header given in seconds (capped at 5 minutes).
func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second, 5*time.Minute)
}

// redact drops credentials and the query (which may hold tokens) from u.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(invalid url)"
	}
	p.User, p.RawQuery, p.Fragment = nil, "", ""
	return p.String()
}

func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if s == "" {
		return "(empty body)"
	}
	return s
}

func newWebhook() *webhook {
	return &webhook{client: &http.Client{}, now: time.Now, getenv: os.Getenv}
}

func main() { sdk.Serve(newWebhook()) }
