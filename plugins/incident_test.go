package plugins

import (
	"reflect"
	"testing"

	"github.com/medic-sidecar/medic/actions"
	"github.com/medic-sidecar/medic/plugins/sdk"
)

// A plugin sees the incident in the same JSON form as medic's audit
// records: the SDK's copy of actions.Incident has the same fields (the
// conversion in toSDKIncident checks that) and the same JSON tags.
func TestSDKIncidentHasTheAuditForm(t *testing.T) {
	a, s := reflect.TypeFor[actions.Incident](), reflect.TypeFor[sdk.Incident]()
	for i := range a.NumField() {
		if at, st := a.Field(i).Tag.Get("json"), s.Field(i).Tag.Get("json"); at != st {
			t.Errorf("field %s: json tag %q in actions, %q in the SDK", a.Field(i).Name, at, st)
		}
	}
}
