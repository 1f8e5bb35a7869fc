package main

import (
	"errors"
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"concurrent-servers-go/internal/session"
)

// series is one step's points: the runs where every session was correct
// make its line; the others are drawn apart, as failures.
type series struct {
	name   string
	ok     plotter.XYs
	failed plotter.XYs
	labels []string // "1014/1100" beside each failed point
}

// chartSeries groups the rows that have a time by step, in table order.
// A run that was skipped or could not start has no point at all.
func chartSeries(rows []row) []*series {
	var out []*series
	by := map[string]*series{}
	for _, r := range rows {
		if r.elapsed == 0 {
			continue
		}
		name := r.step.title()
		s := by[name]
		if s == nil {
			s = &series{name: name}
			by[name] = s
			out = append(out, s)
		}
		// In sessions, not seconds: the big N runs a shorter session, and
		// on this axis 1 is "as fast as one client alone" at any scale.
		pt := plotter.XY{X: float64(r.n), Y: r.elapsed.Seconds() / session.Duration(r.scale).Seconds()}
		if r.correct < r.n {
			s.failed = append(s.failed, pt)
			s.labels = append(s.labels, fmt.Sprintf("%d/%d", r.correct, r.n))
		} else {
			s.ok = append(s.ok, pt)
		}
	}
	return out
}

// spansDecades says whether the largest of vs is at least ten times the
// smallest: then a log axis keeps the small values readable.
func spansDecades(vs []float64) bool {
	lo, hi := 0.0, 0.0
	for i, v := range vs {
		if i == 0 || v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo > 0 && hi >= 10*lo
}

// drawChart plots Elapsed, in sessions, against N, one line per step, and writes it to
// path; the extension (.svg, .png) picks the format. A step's line joins
// only its fully correct runs. A run where some sessions failed (select
// refusing clients past FD_SETSIZE) is a red cross labelled with how many
// were correct, so it is never read as a success. A step with a single
// run (a sequential step, whose big N was skipped) is its point alone.
// The legend sits beside the plot, where it cannot cover a line.
func drawChart(path string, rows []row) error {
	ss := chartSeries(rows)
	if len(ss) == 0 {
		return errors.New("no step ran, nothing to draw")
	}
	p := plot.New()
	p.Title.Text = "N classic sessions at once"
	p.X.Label.Text = "N (concurrent sessions)"
	p.Y.Label.Text = "Elapsed / one session alone"
	p.Add(plotter.NewGrid())

	var xs, ys []float64
	for _, s := range ss {
		for _, pt := range append(append(plotter.XYs{}, s.ok...), s.failed...) {
			xs, ys = append(xs, pt.X), append(ys, pt.Y)
		}
	}
	if spansDecades(xs) {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	if spansDecades(ys) {
		p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}

	legend := plot.NewLegend()
	anyFailed := false
	for i, s := range ss {
		c := palette[i%len(palette)]
		g := plotutil.Shape(i)
		if len(s.ok) > 0 {
			l, pts, err := plotter.NewLinePoints(s.ok)
			if err != nil {
				return err
			}
			l.Color, pts.Color, pts.Shape = c, c, g
			l.Dashes = plotutil.Dashes(i)
			pts.Radius = vg.Points(3)
			p.Add(l, pts)
			legend.Add(s.name, l, pts)
		}
		if len(s.failed) > 0 {
			anyFailed = true
			sc, err := plotter.NewScatter(s.failed)
			if err != nil {
				return err
			}
			sc.Color, sc.Shape, sc.Radius = color.RGBA{R: 220, A: 255}, draw.CrossGlyph{}, vg.Points(5)
			lab, err := plotter.NewLabels(plotter.XYLabels{XYs: s.failed, Labels: labelsFor(s)})
			if err != nil {
				return err
			}
			for j := range lab.TextStyle {
				lab.TextStyle[j].Color = color.RGBA{R: 220, A: 255}
				lab.TextStyle[j].XAlign = draw.XRight
			}
			lab.Offset = vg.Point{X: -vg.Points(6), Y: vg.Points(4)}
			p.Add(sc, lab)
			if len(s.ok) == 0 {
				legend.Add(s.name, sc)
			}
		}
	}
	// Room above and below the outermost points, so that no glyph is cut
	// in half by the frame.
	p.Y.Max *= 1.1
	if p.Y.Scale == nil || !isLog(p.Y.Scale) {
		p.Y.Min = max(0, p.Y.Min-0.1*(p.Y.Max-p.Y.Min))
	}
	if anyFailed {
		sc, _ := plotter.NewScatter(plotter.XYs{{}})
		sc.Color, sc.Shape, sc.Radius = color.RGBA{R: 220, A: 255}, draw.CrossGlyph{}, vg.Points(5)
		legend.Add("some sessions failed (correct/N)", sc)
	}
	return saveWithLegend(p, legend, path)
}

// palette has a distinct colour for each of the nine steps and variants
// a default run draws (plotutil's has seven, and would repeat); red is
// left for the failure marks.
var palette = []color.Color{
	color.RGBA{31, 119, 180, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{44, 160, 44, 255},
	color.RGBA{148, 103, 189, 255}, color.RGBA{140, 86, 75, 255}, color.RGBA{227, 119, 194, 255},
	color.RGBA{127, 127, 127, 255}, color.RGBA{188, 189, 34, 255}, color.RGBA{23, 190, 207, 255},
}

func isLog(n plot.Normalizer) bool {
	_, ok := n.(plot.LogScale)
	return ok
}

// labelsFor names each failed point after the step and its score.
func labelsFor(s *series) []string {
	short, _, _ := strings.Cut(s.name, "_")
	out := make([]string, len(s.labels))
	for i, l := range s.labels {
		out[i] = short + " " + l
	}
	return out
}

// saveWithLegend draws p on the left of the image and the legend in a
// column on the right, then writes the file in the format its extension
// names.
func saveWithLegend(p *plot.Plot, legend plot.Legend, path string) error {
	const w, h = 22 * vg.Centimeter, 10 * vg.Centimeter
	format := strings.TrimPrefix(strings.ToLower(filepath.Ext(path)), ".")
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	legendW := 7 * vg.Centimeter
	p.Draw(draw.Crop(dc, 0, -legendW, 0, 0))
	legend.Top = true
	legend.Left = true
	legend.YOffs = -vg.Centimeter
	legend.Draw(draw.Crop(dc, w-legendW+vg.Points(6), 0, 0, 0))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
