package bench

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// PlotRun is one run drawn on a plot: several runs (a comparison) share
// the axes.
type PlotRun struct {
	Name   string
	Report *Report
}

// plotSpec is one plot: a figure per second of the series.
type plotSpec struct {
	file, title, ylabel string
	value               func(SecondStats) (float64, bool)
}

var plotSpecs = []plotSpec{
	{"throughput", "Acknowledged throughput", "records/s", func(s SecondStats) (float64, bool) { return float64(s.Acked), true }},
	{"latency-avg", "Average publish latency", "ms", func(s SecondStats) (float64, bool) { return s.Publish.Avg, s.Publish.Count > 0 }},
	{"latency-p95", "p95 publish latency", "ms", func(s SecondStats) (float64, bool) { return s.Publish.P95, s.Publish.Count > 0 }},
	{"e2e-latency", "End-to-end latency (p50, p95)", "ms", nil},
}

var runColors = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
	color.RGBA{R: 148, G: 103, B: 189, A: 255},
}

// WritePlots draws throughput, average and p95 publish latency and
// end-to-end latency over time for the runs, with each run's fault events
// as labelled vertical lines, into dir/prefix-<plot>.png. It returns the
// files written.
func WritePlots(dir, prefix string, runs []PlotRun) ([]string, error) {
	var files []string
	for _, spec := range plotSpecs {
		p := plot.New()
		p.Title.Text = spec.title
		p.X.Label.Text = "seconds"
		p.Y.Label.Text = spec.ylabel
		p.X.Min, p.Y.Min = 0, 0
		p.Add(plotter.NewGrid())
		p.X.Tick.Marker = plainTicks{}
		p.Y.Tick.Marker = plainTicks{}
		ymax := 0.0
		for i, run := range runs {
			type line struct {
				name  string
				value func(SecondStats) (float64, bool)
				dash  bool
			}
			lines := []line{{run.Name, spec.value, false}}
			if spec.value == nil {
				lines = []line{
					{run.Name + " p50", func(s SecondStats) (float64, bool) { return s.EndToEnd.P50, s.EndToEnd.Count > 0 }, false},
					{run.Name + " p95", func(s SecondStats) (float64, bool) { return s.EndToEnd.P95, s.EndToEnd.Count > 0 }, true},
				}
			}
			for _, ln := range lines {
				// A second without a value (no acknowledgement to measure)
				// breaks the line rather than being bridged.
				var segs []plotter.XYs
				var cur plotter.XYs
				for _, s := range run.Report.Series {
					v, ok := ln.value(s)
					if !ok {
						if len(cur) > 0 {
							segs, cur = append(segs, cur), nil
						}
						continue
					}
					cur = append(cur, plotter.XY{X: float64(s.T) + 0.5, Y: v})
					ymax = max(ymax, v)
				}
				if len(cur) > 0 {
					segs = append(segs, cur)
				}
				for k, seg := range segs {
					l, sc, err := plotter.NewLinePoints(seg)
					if err != nil {
						return files, fmt.Errorf("bench: plot %s: %w", spec.file, err)
					}
					l.Color = runColors[i%len(runColors)]
					l.Width = vg.Points(1.2)
					if ln.dash {
						l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
					}
					sc.Color = l.Color
					sc.Radius = vg.Points(1)
					p.Add(l, sc)
					if k == 0 {
						p.Legend.Add(ln.name, l)
					}
				}
			}
		}
		if ymax == 0 {
			ymax = 1
		}
		p.Y.Max = ymax * 1.15
		for i, run := range runs {
			if err := addFaultMarks(p, run, i, ymax*1.1, len(runs) > 1); err != nil {
				return files, err
			}
		}
		p.Legend.Top = true
		path := filepath.Join(dir, prefix+"-"+spec.file+".png")
		if err := p.Save(9*vg.Inch, 3.5*vg.Inch, path); err != nil {
			return files, fmt.Errorf("bench: saving %s: %w", path, err)
		}
		files = append(files, path)
	}
	return files, nil
}

// addFaultMarks draws a run's fault events as vertical lines labelled with
// the fault kind.
func addFaultMarks(p *plot.Plot, run PlotRun, i int, top float64, named bool) error {
	var labels plotter.XYLabels
	for _, f := range run.Report.Faults {
		l, err := plotter.NewLine(plotter.XYs{{X: f.At, Y: 0}, {X: f.At, Y: top}})
		if err != nil {
			return fmt.Errorf("bench: fault mark: %w", err)
		}
		l.Color = color.Gray{Y: 90}
		if i > 0 {
			l.Color = runColors[i%len(runColors)]
		}
		l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
		p.Add(l)
		text := string(f.Event.Kind)
		if named {
			text = run.Name + ": " + text
		}
		labels.XYs = append(labels.XYs, plotter.XY{X: f.At, Y: top * (0.97 - 0.06*float64(len(labels.XYs)%4))})
		labels.Labels = append(labels.Labels, " "+text)
	}
	if len(labels.XYs) == 0 {
		return nil
	}
	lp, err := plotter.NewLabels(labels)
	if err != nil {
		return fmt.Errorf("bench: fault labels: %w", err)
	}
	for j := range lp.TextStyle {
		lp.TextStyle[j].Font.Size = vg.Points(7)
	}
	p.Add(lp)
	return nil
}

// plainTicks are gonum's default ticks with labels in the shortest form
// ("5000", not "5000.00").
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strconv.FormatFloat(ticks[i].Value, 'f', -1, 64)
		}
	}
	return ticks
}
