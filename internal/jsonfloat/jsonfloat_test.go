package jsonfloat

import (
	"encoding/json"
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0.25, `0.25`}, {1e21, `1e+21`}, {math.NaN(), `"NaN"`}, {math.Inf(1), `"+Inf"`}, {math.Inf(-1), `"-Inf"`}, {0, `0`}} {
		b, err := json.Marshal(Float(c.v))
		if err != nil || string(b) != c.want {
			t.Fatalf("marshal %v = %s, %v; want %s", c.v, b, err, c.want)
		}
		var back Float
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if !(float64(back) == c.v || math.IsNaN(c.v) && math.IsNaN(float64(back))) {
			t.Fatalf("round trip %v -> %s -> %v", c.v, b, back)
		}
	}
	var f Float
	if err := json.Unmarshal([]byte(`"abc"`), &f); err == nil {
		t.Fatal("a non-numeric string was accepted")
	}
}

func TestSanitizeDetails(t *testing.T) {
	in := map[string]any{"ok": 1.5, "nested": map[string]any{"bad": math.Inf(-1)}, "list": []any{math.NaN(), "x"},
		"f32": float32(math.Inf(1)), "fs": []float64{1, math.NaN()}, "m": map[string]float64{"a": math.NaN()}}
	if _, err := json.Marshal(in); err == nil {
		t.Fatal("precondition: encoding/json should refuse NaN")
	}
	out := SanitizeMap(in)
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"f32":"+Inf","fs":[1,"NaN"],"list":["NaN","x"],"m":{"a":"NaN"},"nested":{"bad":"-Inf"},"ok":1.5}`
	if string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
	if !math.IsInf(in["nested"].(map[string]any)["bad"].(float64), -1) {
		t.Fatal("the input was modified")
	}
	clean := map[string]any{"a": 1.0}
	if got := SanitizeMap(clean); got["a"] != 1.0 {
		t.Fatal(got)
	}
}
