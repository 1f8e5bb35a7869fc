package main

import (
	"io"
	"os"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progress is one progress bar on stderr, shown only when stderr is a
// terminal: in a pipe, a log file or a test it would be noise, so every
// method is then a no-op.
type progress struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

// newProgress shows a bar counting up to total, labelled name, if w is a
// terminal. unit names what is counted, for the counter ("msgs", "conns").
func newProgress(w io.Writer, name string, total int64, unit string) *progress {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(int(f.Fd())) || total <= 0 {
		return &progress{}
	}
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.CountersNoUnit("%d / %d "+unit, decor.WCSyncSpace)),
		mpb.BarRemoveOnComplete(),
	)
	return &progress{p: p, bar: bar}
}

// set moves the bar to n.
func (pr *progress) set(n int64) {
	if pr.bar != nil {
		pr.bar.SetCurrent(n)
	}
}

// done removes the bar and waits until it is off the screen, so what is
// printed next starts on a clean line.
func (pr *progress) done() {
	if pr.bar == nil {
		return
	}
	pr.bar.Abort(true)
	pr.p.Wait()
}
