package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tls: keys ca, cert and key were renamed caFile, certFile and
// keyFile (CHANGELOG.md): a config with the old spelling still loads, and
// validate (like run, through loadConfig) warns once per key with its
// path and line.
func TestValidateWarnsAboutDeprecatedTLSKeys(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "medic.yaml")
	os.WriteFile(conf, []byte(`stateDir: `+dir+`
probes:
  - name: live
    http:
      url: https://127.0.0.1:1/live
      tls: {ca: /ca.pem, cert: /c.pem, key: /k.pem}
  - name: relay
    grpcStream:
      target: 127.0.0.1:2
      tls: {caFile: /ca.pem, serverName: relay}
`), 0o600)
	code, out, stderr := runCLI(context.Background(), "validate", "--config", conf)
	if code != 0 || !strings.Contains(out, "valid (2 probes") {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	for _, key := range []string{"ca: deprecated key: write caFile", "cert: deprecated key: write certFile", "key: deprecated key: write keyFile"} {
		want := conf + ": warning: probes[0].http.tls." + key
		if n := strings.Count(stderr, want); n != 1 {
			t.Errorf("%q %d times in:\n%s", want, n, stderr)
		}
	}
	if n := strings.Count(stderr, "warning:"); n != 3 {
		t.Errorf("%d warnings, want 3:\n%s", n, stderr)
	}
}
