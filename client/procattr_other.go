//go:build !linux

package main

import "os/exec"

// dieWithParent does nothing outside Linux, which alone has
// PR_SET_PDEATHSIG: there the children are stopped by our own clean-up,
// which runs on Ctrl-C and on normal exit, but not on kill -9.
func dieWithParent(cmd *exec.Cmd) {}
