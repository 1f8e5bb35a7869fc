//go:build race

package steptest

// RaceEnabled is true when the tests run with -race; the servers they build
// then get the race detector too.
const RaceEnabled = true
