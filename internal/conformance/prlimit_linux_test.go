package conformance

import "golang.org/x/sys/unix"

// lowerNofile lowers another process's soft open-file limit to cur with
// Linux's prlimit(2), and returns what puts the old one back. Only the
// soft limit moves, so a process may always raise it again. Elsewhere
// there is no such call, and the tests that need it skip first
// (steptest.NeedsLinux).
func lowerNofile(pid int, cur uint64) (restore func() error, err error) {
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		return nil, err
	}
	low := unix.Rlimit{Cur: cur, Max: old.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		return nil, err
	}
	return func() error { return unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil) }, nil
}
