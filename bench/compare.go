package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
)

// Side is one of the two clusters of a comparison.
type Side struct {
	Name      string    `json:"name"`
	Bootstrap []string  `json:"bootstrap"`
	Rounds    []*Report `json:"rounds"`
}

// Comparison is the same workload run against two clusters in
// alternating rounds (A, B, A, B, ...), so that drift of the machine over
// time affects both alike.
type Comparison struct {
	A    Side         `json:"a"`
	B    Side         `json:"b"`
	Rows []CompareRow `json:"rows"`
}

// CompareRow is one figure: the median over the rounds of each side, and
// B/A.
type CompareRow struct {
	Figure string  `json:"figure"`
	A      float64 `json:"a"`
	B      float64 `json:"b"`
	Ratio  float64 `json:"ratio_b_over_a"`
}

// Compare runs w against a and b, rounds times each, alternating. An
// audit failure on either side is returned (wrapping ErrAudit) after all
// rounds ran.
func Compare(ctx context.Context, w Workload, a, b Side, rounds int, opt RunOptions) (*Comparison, error) {
	if rounds < 1 {
		return nil, fmt.Errorf("bench: compare: %d rounds: want at least 1", rounds)
	}
	cmp := &Comparison{A: a, B: b}
	var auditErrs []error
	for i := range rounds {
		for _, side := range []*Side{&cmp.A, &cmp.B} {
			sw := w
			sw.Brokers, sw.Label = side.Bootstrap, side.Name
			if opt.Log != nil {
				opt.Log.Info("compare round", "round", i+1, "side", side.Name)
			}
			rep, err := Run(ctx, sw, opt)
			if err != nil && !errors.Is(err, ErrAudit) {
				return cmp, fmt.Errorf("bench: compare round %d on %s: %w", i+1, side.Name, err)
			}
			if err != nil {
				auditErrs = append(auditErrs, fmt.Errorf("round %d on %s: %w", i+1, side.Name, err))
			}
			side.Rounds = append(side.Rounds, rep)
		}
	}
	cmp.Rows = compareRows(cmp.A.Rounds, cmp.B.Rounds)
	return cmp, errors.Join(auditErrs...)
}

var compareFigures = []struct {
	name  string
	value func(*Report) float64
}{
	{"records/s", func(r *Report) float64 { return r.Summary.RecordsPerSec }},
	{"MB/s", func(r *Report) float64 { return r.Summary.MBPerSec }},
	{"publish avg ms", func(r *Report) float64 { return r.Summary.Publish.Avg }},
	{"publish p50 ms", func(r *Report) float64 { return r.Summary.Publish.P50 }},
	{"publish p95 ms", func(r *Report) float64 { return r.Summary.Publish.P95 }},
	{"publish p99 ms", func(r *Report) float64 { return r.Summary.Publish.P99 }},
	{"publish p99.9 ms", func(r *Report) float64 { return r.Summary.Publish.P999 }},
	{"publish max ms", func(r *Report) float64 { return r.Summary.Publish.Max }},
	{"end-to-end p50 ms", func(r *Report) float64 { return r.Summary.EndToEnd.P50 }},
	{"end-to-end p99 ms", func(r *Report) float64 { return r.Summary.EndToEnd.P99 }},
	{"errors", func(r *Report) float64 { return float64(r.Summary.Failed) }},
	{"lost", func(r *Report) float64 { return float64(r.Audit.Lost) }},
}

func median(rs []*Report, f func(*Report) float64) float64 {
	var v []float64
	for _, r := range rs {
		if r != nil {
			v = append(v, f(r))
		}
	}
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func compareRows(a, b []*Report) []CompareRow {
	var rows []CompareRow
	for _, f := range compareFigures {
		row := CompareRow{Figure: f.name, A: median(a, f.value), B: median(b, f.value)}
		if row.A != 0 {
			row.Ratio = row.B / row.A
		}
		rows = append(rows, row)
	}
	return rows
}

// MedianRound is the round of a side whose throughput is the median, the
// one drawn on the comparison's plots.
func (s *Side) MedianRound() *Report {
	rs := slices.DeleteFunc(slices.Clone(s.Rounds), func(r *Report) bool { return r == nil })
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(x, y *Report) int {
		switch {
		case x.Summary.RecordsPerSec < y.Summary.RecordsPerSec:
			return -1
		case x.Summary.RecordsPerSec > y.Summary.RecordsPerSec:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

// WriteTable prints the side-by-side table.
func (c *Comparison) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "median of %d rounds\t%s\t%s\t%s/%s\t\n", len(c.A.Rounds), c.A.Name, c.B.Name, c.B.Name, c.A.Name)
	for _, r := range c.Rows {
		ratio := "-"
		if r.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%s\t\n", r.Figure, r.A, r.B, ratio)
	}
	_ = tw.Flush()
}

// WritePlots draws the median round of each side on the same axes.
func (c *Comparison) WritePlots(dir, prefix string) ([]string, error) {
	var runs []PlotRun
	for _, s := range []*Side{&c.A, &c.B} {
		if r := s.MedianRound(); r != nil {
			runs = append(runs, PlotRun{Name: s.Name, Report: r})
		}
	}
	return WritePlots(dir, prefix, runs)
}

// WriteFiles writes the comparison as JSON and its plots into dir.
func (c *Comparison) WriteFiles(dir, prefix string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: output directory: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bench: encoding the comparison: %w", err)
	}
	path := filepath.Join(dir, prefix+".json")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("bench: writing the comparison: %w", err)
	}
	pngs, err := c.WritePlots(dir, prefix)
	return append([]string{path}, pngs...), err
}
