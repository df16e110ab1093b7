package relayapi

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestFieldNumbers pins the wire facts established from KubeArmor's
// kubearmor.proto: renumbering any of these breaks compatibility.
func TestFieldNumbers(t *testing.T) {
	want := map[protoreflect.Message]map[string]protoreflect.FieldNumber{
		(&NonceMessage{}).ProtoReflect():   {"nonce": 1},
		(&ReplyMessage{}).ProtoReflect():   {"Retval": 1},
		(&RequestMessage{}).ProtoReflect(): {"Filter": 1},
		(&Message{}).ProtoReflect(): {"Timestamp": 1, "UpdatedTime": 2, "ClusterName": 3, "HostName": 4,
			"HostIP": 5, "Type": 6, "Level": 7, "Message": 8},
		(&Alert{}).ProtoReflect(): {"Timestamp": 1, "UpdatedTime": 2, "ClusterName": 3, "HostName": 4,
			"NamespaceName": 5, "PodName": 6, "ContainerID": 7, "ContainerName": 8, "HostPID": 9, "PPID": 10,
			"PID": 11, "UID": 12, "PolicyName": 13, "Severity": 14, "Tags": 15, "Message": 16, "Type": 17,
			"Source": 18, "Operation": 19, "Resource": 20, "Data": 21, "Action": 22, "Result": 23,
			"ContainerImage": 24, "ParentProcessName": 25, "ProcessName": 26, "HostPPID": 27, "Enforcer": 28,
			"Labels": 29, "ATags": 30, "Cwd": 32, "TTY": 33, "NodeID": 38, "EventData": 43, "UserName": 44},
		(&Log{}).ProtoReflect(): {"Timestamp": 1, "UpdatedTime": 2, "ClusterName": 3, "HostName": 4,
			"NamespaceName": 5, "PodName": 6, "ContainerID": 7, "ContainerName": 8, "HostPID": 9, "PPID": 10,
			"PID": 11, "UID": 12, "Type": 13, "Source": 14, "Operation": 15, "Resource": 16, "Data": 17,
			"Result": 18, "ContainerImage": 19, "ParentProcessName": 20, "ProcessName": 21, "HostPPID": 22,
			"Labels": 23, "Cwd": 25, "TTY": 26, "NodeID": 28, "EventData": 33, "UserName": 34},
	}
	for m, fields := range want {
		d := m.Descriptor()
		if d.ParentFile().Package() != "feeder" {
			t.Fatalf("%s: package %s, want feeder", d.FullName(), d.ParentFile().Package())
		}
		if d.Fields().Len() != len(fields) {
			t.Errorf("%s: %d fields declared, %d pinned", d.Name(), d.Fields().Len(), len(fields))
		}
		for name, num := range fields {
			f := d.Fields().ByName(protoreflect.Name(name))
			if f == nil {
				t.Errorf("%s.%s missing", d.Name(), name)
				continue
			}
			if f.Number() != num {
				t.Errorf("%s.%s = %d, want %d", d.Name(), name, f.Number(), num)
			}
		}
	}
	if got := File_feeder_proto.Services().ByName("LogService").FullName(); got != "feeder.LogService" {
		t.Fatalf("service %s", got)
	}
}

// TestUndeclaredFieldsAreSkipped decodes an Alert as the relay sends it,
// with the fields medic does not declare (Owner = 31, a nested Podowner)
// present on the wire.
func TestUndeclaredFieldsAreSkipped(t *testing.T) {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType)
	b = protowire.AppendVarint(b, 1700000000)
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendString(b, "nginx-1")
	var owner []byte
	owner = protowire.AppendTag(owner, 1, protowire.BytesType)
	owner = protowire.AppendString(owner, "Deployment")
	b = protowire.AppendTag(b, 31, protowire.BytesType)
	b = protowire.AppendBytes(b, owner)
	b = protowire.AppendTag(b, 13, protowire.BytesType)
	b = protowire.AppendString(b, "block-exec")
	var a Alert
	if err := proto.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	if a.GetTimestamp() != 1700000000 || a.GetPodName() != "nginx-1" || a.GetPolicyName() != "block-exec" {
		t.Fatalf("decoded %v", &a)
	}
}

func TestStreams(t *testing.T) {
	for _, s := range Streams {
		if s.Method() == "" || !s.AcceptsFilter(s.DefaultFilter()) || s.AcceptsFilter("") != (s == StreamMessages) {
			t.Errorf("%s: method %q default %q", s, s.Method(), s.DefaultFilter())
		}
	}
	if Stream("events").Method() != "" || Stream("events").AcceptsFilter("all") {
		t.Error("unknown stream")
	}
}
