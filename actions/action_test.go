package actions

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
)

func TestResourceExhaustionIsNeverPermanent(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOMEM, syscall.EAGAIN} {
		err := Permanent(fmt.Errorf("run: %w", &os.PathError{Op: "open", Path: "/dev/null", Err: errno}))
		if !ResourceExhausted(err) {
			t.Errorf("%v: not seen as resource exhaustion", errno)
		}
		if IsPermanent(err) {
			t.Errorf("%v marked Permanent is still permanent: %v", errno, err)
		}
	}
	if err := Permanent(&os.PathError{Op: "fork/exec", Path: "/x", Err: syscall.ENOENT}); !IsPermanent(err) || ResourceExhausted(err) {
		t.Fatalf("ENOENT: permanent=%v exhausted=%v", IsPermanent(err), ResourceExhausted(err))
	}
	if IsPermanent(errors.New("plain")) {
		t.Fatal("a plain error is permanent")
	}
}
