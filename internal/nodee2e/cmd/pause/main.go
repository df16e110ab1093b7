// Command pause is the pod sandbox ("pause") container of the node E2E
// tests: registry.k8s.io/pause cannot be pulled here, so containerd's
// sandbox_image is this program, built from the repository. As PID 1 of a
// pod with shareProcessNamespace it reaps orphaned children; it exits on
// SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			return
		}
		for { // reap every exited child
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
