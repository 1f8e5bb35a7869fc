package app

import (
	"os"
	"runtime/pprof"
)

// CPUProfile starts a CPU profile written to path and returns the function
// that ends it: what a server's --cpuprofile flag does, for reading with
// `go tool pprof` where its time goes under load.
func CPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
