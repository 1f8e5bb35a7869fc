package main

import (
	"errors"
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// drawChart plots Elapsed against N, one line per step, and writes it to
// path; the extension (.svg, .png) picks the format. On it the sequential
// step is a steep line and every concurrent one lies flat near one
// session's time.
func drawChart(path string, rows []row, scale float64) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Classic sessions at once (scale %v)", scale)
	p.X.Label.Text = "N (concurrent sessions)"
	p.Y.Label.Text = "Elapsed (s)"
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())

	var lines []any
	var order []string
	pts := map[string]plotter.XYs{}
	for _, r := range rows {
		if r.elapsed == 0 {
			continue
		}
		name := r.step.title()
		if _, ok := pts[name]; !ok {
			order = append(order, name)
		}
		pts[name] = append(pts[name], plotter.XY{X: float64(r.n), Y: r.elapsed.Seconds()})
	}
	if len(order) == 0 {
		return errors.New("no step ran, nothing to draw")
	}
	for _, name := range order {
		lines = append(lines, name, pts[name])
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return err
	}
	return p.Save(16*vg.Centimeter, 10*vg.Centimeter, path)
}
