package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fake is an in-process Plugin whose behaviour each test sets.
type fake struct {
	info      Info
	validate  func(ctx context.Context, config json.RawMessage) error
	remediate func(ctx context.Context, inc Incident, config json.RawMessage) (Result, error)
}

func (f *fake) Info() Info { return f.info }
func (f *fake) Remediate(ctx context.Context, inc Incident, c json.RawMessage) (Result, error) {
	return f.remediate(ctx, inc, c)
}

// validating adds Validator to fake.
type validating struct{ *fake }

func (v validating) Validate(ctx context.Context, c json.RawMessage) error { return v.validate(ctx, c) }

// connect serves impl over a real in-process gRPC connection (go-plugin's
// TestPluginGRPCConn) and returns the host-side Client.
func connect(t *testing.T, impl Plugin) *Client {
	t.Helper()
	gc, gs := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: impl}})
	_ = gs // stopped by gc.Close (go-plugin's Shutdown RPC)
	t.Cleanup(func() { _ = gc.Close() })
	raw, err := gc.Dispense(PluginName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		t.Fatalf("dispensed %T, want *Client", raw)
	}
	return c
}

func TestInfo(t *testing.T) {
	schema := json.RawMessage(`{"type":"object","properties":{"url":{"type":"string"}}}`)
	c := connect(t, &fake{info: Info{Name: "hook", Version: "1.2.3", Description: "posts", ConfigSchema: schema, ProtocolVersion: 99}})
	got, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Name: "hook", Version: "1.2.3", Description: "posts", ConfigSchema: schema, ProtocolVersion: ProtocolVersion}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Info = %+v, want %+v", got, want)
	}
}

func TestValidate(t *testing.T) {
	t.Run("no validator", func(t *testing.T) {
		c := connect(t, &fake{})
		probs, err := c.Validate(context.Background(), []byte(`{"anything":1}`))
		if err != nil || len(probs) != 0 {
			t.Fatalf("Validate = %v, %v; want no problems", probs, err)
		}
	})
	t.Run("problems with paths", func(t *testing.T) {
		var seen string
		c := connect(t, validating{&fake{validate: func(_ context.Context, cfg json.RawMessage) error {
			seen = string(cfg)
			return errors.Join(Errorf("url", "is required"), Errorf("headers.X-Token", "must not be empty"), errors.New("whole config is odd"))
		}}})
		probs, err := c.Validate(context.Background(), []byte(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		want := []FieldError{{"url", "is required"}, {"headers.X-Token", "must not be empty"}, {"", "whole config is odd"}}
		if !reflect.DeepEqual(probs, want) {
			t.Fatalf("problems = %+v, want %+v", probs, want)
		}
		if seen != `{"a":1}` {
			t.Fatalf("plugin saw config %q", seen)
		}
	})
	t.Run("panic becomes an error", func(t *testing.T) {
		c := connect(t, validating{&fake{validate: func(context.Context, json.RawMessage) error { panic("boom") }}})
		_, err := c.Validate(context.Background(), nil)
		if err == nil || !contains(err.Error(), "boom") {
			t.Fatalf("err = %v, want the panic", err)
		}
	})
}

func TestRemediateOutcomes(t *testing.T) {
	started := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	inc := Incident{ID: "i-1", Alert: "RelayDown", Labels: map[string]string{"probe": "relay"},
		Annotations: map[string]string{"summary": "down"}, Value: 2.5, Step: 2, Action: "hook",
		Attempt: 3, MaxAttempts: 4, Started: started, DryRun: true}
	type detail struct {
		Code int `json:"code"`
	}
	cases := []struct {
		name    string
		res     Result
		err     error
		panic   bool
		want    Outcome
		wantMsg string
	}{
		{name: "succeeded", res: Result{Message: "ok", Output: "out", Details: map[string]any{"n": 1, "d": detail{202}}}, want: Succeeded, wantMsg: "ok"},
		{name: "retryable", err: errors.New("connection refused"), want: RetryableError, wantMsg: "connection refused"},
		{name: "permanent", err: Permanent(errors.New("401 unauthorized")), want: PermanentError, wantMsg: "401 unauthorized"},
		{name: "panic", panic: true, want: RetryableError, wantMsg: "plugin panicked: kaboom"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var gotInc Incident
			var gotCfg string
			c := connect(t, &fake{remediate: func(_ context.Context, i Incident, cfg json.RawMessage) (Result, error) {
				gotInc, gotCfg = i, string(cfg)
				if tc.panic {
					panic("kaboom")
				}
				return tc.res, tc.err
			}})
			o, res, err := c.Remediate(context.Background(), inc, []byte(`{"x":true}`), time.Time{})
			if err != nil {
				t.Fatalf("call error: %v", err)
			}
			if o != tc.want || res.Message != tc.wantMsg {
				t.Fatalf("outcome %v %q, want %v %q", o, res.Message, tc.want, tc.wantMsg)
			}
			if !reflect.DeepEqual(gotInc, inc) {
				t.Fatalf("plugin saw incident %+v, want %+v", gotInc, inc)
			}
			if gotCfg != `{"x":true}` {
				t.Fatalf("plugin saw config %q", gotCfg)
			}
			if tc.name == "succeeded" {
				want := map[string]any{"n": 1.0, "d": map[string]any{"code": 202.0}}
				if !reflect.DeepEqual(res.Details, want) || res.Output != "out" {
					t.Fatalf("result = %+v, want details %v", res, want)
				}
			}
		})
	}
}

func TestRemediateDeadlinePropagation(t *testing.T) {
	seen := make(chan time.Time, 1)
	c := connect(t, &fake{remediate: func(ctx context.Context, _ Incident, _ json.RawMessage) (Result, error) {
		d, _ := ctx.Deadline()
		seen <- d
		<-ctx.Done()
		return Result{}, ctx.Err()
	}})

	t.Run("attempt deadline from the request", func(t *testing.T) {
		// The request's deadline is earlier than the gRPC one: the plugin's
		// context must end at the request's deadline, and the plugin's
		// answer (not a transport error) must come back.
		deadline := time.Now().Add(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		o, res, err := c.Remediate(ctx, Incident{ID: "x"}, nil, deadline)
		if err != nil {
			t.Fatalf("call error %v, want the plugin's own answer", err)
		}
		if o != RetryableError || !contains(res.Message, "deadline exceeded") {
			t.Fatalf("outcome %v %q", o, res.Message)
		}
		if got := <-seen; !got.Equal(deadline.Round(0)) && got.Sub(deadline).Abs() > time.Millisecond {
			t.Fatalf("plugin deadline %v, want %v", got, deadline)
		}
	})
	t.Run("gRPC deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		want, _ := ctx.Deadline()
		// Both ends see the same deadline: either the host's call
		// expires first or the plugin's answer wins the race.
		o, res, err := c.Remediate(ctx, Incident{ID: "x"}, nil, time.Time{})
		if status.Code(err) != codes.DeadlineExceeded && (err != nil || o != RetryableError || !strings.Contains(res.Message, "deadline exceeded")) {
			t.Fatalf("got %v %q %v, want DeadlineExceeded", o, res.Message, err)
		}
		got := <-seen
		// gRPC carries a timeout, not an instant: the plugin's deadline is
		// later by the call's transit time (bounded generously for a
		// loaded machine).
		if got.IsZero() || got.After(want.Add(time.Second)) {
			t.Fatalf("plugin deadline %v, want about %v", got, want)
		}
	})
}

func TestRemediateCancellation(t *testing.T) {
	entered := make(chan struct{})
	observed := make(chan error, 1)
	c := connect(t, &fake{remediate: func(ctx context.Context, _ Incident, _ json.RawMessage) (Result, error) {
		close(entered)
		select {
		case <-ctx.Done():
			observed <- ctx.Err()
		case <-time.After(10 * time.Second):
			observed <- errors.New("cancellation never arrived")
		}
		return Result{}, ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.Remediate(ctx, Incident{ID: "x"}, nil, time.Now().Add(time.Minute))
		errc <- err
	}()
	<-entered
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("host got %v, want Canceled", err)
	}
	if err := <-observed; !errors.Is(err, context.Canceled) {
		t.Fatalf("plugin observed %v, want context.Canceled", err)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
