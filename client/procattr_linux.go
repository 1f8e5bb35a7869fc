package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent asks the kernel to send cmd SIGTERM if this process dies
// without stopping it (kill -9, a crash): servers and workers we started
// must never outlive us, holding ports and thousands of connections.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
