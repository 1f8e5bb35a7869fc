//go:build race

package docscheck

// raceEnabled is set under -race. The chapters' commands are other
// programs, built without the race detector, so running them again under
// it checks nothing new: CI runs them once, in the plain pass.
const raceEnabled = true
