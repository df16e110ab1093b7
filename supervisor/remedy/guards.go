package remedy

import "os"

// FilePauser reports paused while a file exists (stateDir/paused).
type FilePauser struct{ Path string }

// Paused implements Pauser.
func (f FilePauser) Paused() (bool, string) {
	if _, err := os.Lstat(f.Path); err == nil {
		return true, "pause file " + f.Path + " exists"
	}
	return false, ""
}
