package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/medic-sidecar/medic/plugins/proto"
)

// GRPCPlugin is the go-plugin glue for the remediation service: the
// plugin side serves Impl, the host side dispenses a *Client.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the plugin's implementation (plugin side only).
	Impl Plugin
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the remediation service for Impl.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterRemediatorServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns a *Client. ctx is go-plugin's per-process context: it
// ends when the plugin process exits, and Client.Done exposes it.
func (p *GRPCPlugin) GRPCClient(ctx context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{rpc: pb.NewRemediatorClient(c), done: ctx}, nil
}

// server translates gRPC requests into Plugin calls.
type server struct {
	pb.UnimplementedRemediatorServer
	impl Plugin
}

func (s *server) Info(_ context.Context, _ *pb.InfoRequest) (resp *pb.InfoResponse, err error) {
	defer recoverTo(&err, "Info")
	i := s.impl.Info()
	return &pb.InfoResponse{
		Name:            i.Name,
		Version:         i.Version,
		ProtocolVersion: ProtocolVersion,
		Description:     i.Description,
		ConfigSchema:    string(i.ConfigSchema),
	}, nil
}

func (s *server) Validate(ctx context.Context, req *pb.ValidateRequest) (resp *pb.ValidateResponse, err error) {
	defer recoverTo(&err, "Validate")
	resp = &pb.ValidateResponse{}
	v, ok := s.impl.(Validator)
	if !ok {
		return resp, nil
	}
	for _, fe := range FieldErrors(v.Validate(ctx, req.GetConfig())) {
		resp.Problems = append(resp.Problems, &pb.Problem{Path: fe.Path, Message: fe.Msg})
	}
	return resp, nil
}

func (s *server) Remediate(ctx context.Context, req *pb.RemediateRequest) (resp *pb.RemediateResponse, err error) {
	var deadline time.Time
	if d := req.GetDeadline(); d != nil {
		deadline = d.AsTime()
	}
	ctx, cancel := withDeadline(ctx, deadline)
	defer cancel()
	var res Result
	var rerr error
	func() {
		defer func() {
			if r := recover(); r != nil {
				Logger().Error("plugin panicked in Remediate", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				rerr = fmt.Errorf("plugin panicked: %v", r)
			}
		}()
		res, rerr = s.impl.Remediate(ctx, incidentFromPB(req.GetIncident()), req.GetConfig())
	}()
	resp = &pb.RemediateResponse{Outcome: pb.Outcome_OUTCOME_SUCCEEDED, Message: res.Message, Output: res.Output}
	switch {
	case rerr == nil:
	case IsPermanent(rerr):
		resp.Outcome, resp.Message = pb.Outcome_OUTCOME_PERMANENT_ERROR, rerr.Error()
	default:
		resp.Outcome, resp.Message = pb.Outcome_OUTCOME_RETRYABLE_ERROR, rerr.Error()
	}
	if len(res.Details) > 0 {
		resp.Details = detailsToPB(res.Details)
	}
	return resp, nil
}

// recoverTo turns a panic in a handler into an error instead of killing
// the plugin process.
func recoverTo(err *error, method string) {
	if r := recover(); r != nil {
		Logger().Error("plugin panicked in "+method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = fmt.Errorf("plugin panicked in %s: %v", method, r)
	}
}

// detailsToPB converts details through JSON, so any JSON-encodable value
// (structs, time.Time, …) is accepted.
func detailsToPB(d map[string]any) *structpb.Struct {
	b, err := json.Marshal(d)
	if err == nil {
		var m map[string]any
		if err = json.Unmarshal(b, &m); err == nil {
			var s *structpb.Struct
			if s, err = structpb.NewStruct(m); err == nil {
				return s
			}
		}
	}
	s, _ := structpb.NewStruct(map[string]any{"detailsError": "details could not be encoded: " + err.Error()})
	return s
}

func incidentToPB(inc Incident) *pb.Incident {
	out := &pb.Incident{
		Id:          inc.ID,
		Alert:       inc.Alert,
		Labels:      inc.Labels,
		Annotations: inc.Annotations,
		Value:       inc.Value,
		Step:        int32(inc.Step),
		Action:      inc.Action,
		Attempt:     int32(inc.Attempt),
		MaxAttempts: int32(inc.MaxAttempts),
		DryRun:      inc.DryRun,
	}
	if !inc.Started.IsZero() {
		out.Started = timestamppb.New(inc.Started)
	}
	return out
}

func incidentFromPB(p *pb.Incident) Incident {
	inc := Incident{
		ID:          p.GetId(),
		Alert:       p.GetAlert(),
		Labels:      p.GetLabels(),
		Annotations: p.GetAnnotations(),
		Value:       p.GetValue(),
		Step:        int(p.GetStep()),
		Action:      p.GetAction(),
		Attempt:     int(p.GetAttempt()),
		MaxAttempts: int(p.GetMaxAttempts()),
		DryRun:      p.GetDryRun(),
	}
	if p.GetStarted() != nil {
		inc.Started = p.GetStarted().AsTime()
	}
	if inc.Labels == nil {
		inc.Labels = map[string]string{}
	}
	return inc
}

// Client is the host's view of one plugin process: it only translates
// between Go values and the wire. medic's plugin host uses it.
type Client struct {
	rpc  pb.RemediatorClient
	done context.Context
}

// Done is closed when the plugin process has exited (never, for a client
// that is not backed by a process).
func (c *Client) Done() <-chan struct{} { return c.done.Done() }

// Info asks the plugin to describe itself.
func (c *Client) Info(ctx context.Context) (Info, error) {
	r, err := c.rpc.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return Info{}, err
	}
	info := Info{
		Name:            r.GetName(),
		Version:         r.GetVersion(),
		Description:     r.GetDescription(),
		ProtocolVersion: r.GetProtocolVersion(),
	}
	if s := r.GetConfigSchema(); s != "" {
		info.ConfigSchema = json.RawMessage(s)
	}
	return info, nil
}

// Validate asks the plugin to check config (JSON). The error is about the
// call; the problems are about the config.
func (c *Client) Validate(ctx context.Context, config []byte) ([]FieldError, error) {
	r, err := c.rpc.Validate(ctx, &pb.ValidateRequest{Config: config})
	if err != nil {
		return nil, err
	}
	var out []FieldError
	for _, p := range r.GetProblems() {
		out = append(out, FieldError{Path: p.GetPath(), Msg: p.GetMessage()})
	}
	return out, nil
}

// Remediate asks the plugin for one attempt that must finish by deadline
// (zero: only ctx bounds it). The error is about the call (transport,
// deadline, cancellation: a gRPC status error); the outcome is the
// plugin's own verdict.
func (c *Client) Remediate(ctx context.Context, inc Incident, config []byte, deadline time.Time) (Outcome, Result, error) {
	req := &pb.RemediateRequest{Incident: incidentToPB(inc), Config: config}
	if !deadline.IsZero() {
		req.Deadline = timestamppb.New(deadline)
	}
	r, err := c.rpc.Remediate(ctx, req)
	if err != nil {
		return Unspecified, Result{}, err
	}
	res := Result{Message: r.GetMessage(), Output: r.GetOutput()}
	if d := r.GetDetails(); d != nil {
		res.Details = d.AsMap()
	}
	var o Outcome
	switch r.GetOutcome() {
	case pb.Outcome_OUTCOME_SUCCEEDED:
		o = Succeeded
	case pb.Outcome_OUTCOME_RETRYABLE_ERROR:
		o = RetryableError
	case pb.Outcome_OUTCOME_PERMANENT_ERROR:
		o = PermanentError
	}
	return o, res, nil
}
