//go:build !linux

package sockdiag

import (
	"context"
	"errors"
	"fmt"
)

const sizeofSockID = 48

// errNotLinux: sock_diag is a Linux interface; medic runs on Linux.
var errNotLinux = fmt.Errorf("sock_diag needs Linux: %w", errors.ErrUnsupported)

// Dump is Linux-only.
func Dump(context.Context, States, bool) ([]Socket, error) { return nil, errNotLinux }

// Destroy is Linux-only.
func Destroy(context.Context, Socket) error { return errNotLinux }
