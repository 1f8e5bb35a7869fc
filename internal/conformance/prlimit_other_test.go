//go:build !linux

package conformance

import "errors"

func lowerNofile(pid int, cur uint64) (restore func() error, err error) {
	return nil, errors.ErrUnsupported
}
