package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// SearchConfig bounds a search for the highest sustainable rate.
type SearchConfig struct {
	// Start is the first rate tried (records/s).
	Start float64
	// Step is how long each rate is held (after the workload's warm-up).
	Step time.Duration
	// MaxSteps bounds the number of rates tried, and so the total time.
	MaxSteps int
	// Precision stops the bisection once the gap between the highest
	// sustained and the lowest failed rate is below this fraction.
	Precision float64
}

// DefaultSearchConfig starts at 1,000 records/s, holds each rate 10 s and
// tries at most 10 rates.
func DefaultSearchConfig() SearchConfig {
	return SearchConfig{Start: 1000, Step: 10 * time.Second, MaxSteps: 10, Precision: 0.05}
}

// SearchCriterion is how a step is judged.
const SearchCriterion = "a rate is sustained when, after the warm-up, the acknowledged rate is at least 95% of the target, " +
	"the consumers read at least 95% of the target rate, the consumer lag when the producers stop is at most one second of records, " +
	"and no record failed"

// SearchStep is one rate tried.
type SearchStep struct {
	Target    float64 `json:"target"`
	Acked     float64 `json:"acked_per_sec"`
	Consumed  float64 `json:"consumed_per_sec"`
	LagAtEnd  int64   `json:"lag_at_end"`
	Failed    int64   `json:"failed"`
	P99Ms     float64 `json:"publish_p99_ms"`
	Sustained bool    `json:"sustained"`
}

// SearchResult is the outcome of a search: the highest sustained rate.
type SearchResult struct {
	Criterion string       `json:"criterion"`
	Steps     []SearchStep `json:"steps"`
	Sustained float64      `json:"sustained_rate"`
}

// sustained judges one step by SearchCriterion.
func sustained(target float64, rep *Report) SearchStep {
	s := &rep.Summary
	st := SearchStep{Target: target, Acked: s.RecordsPerSec, Consumed: s.ConsumedPerSec, LagAtEnd: s.ConsumerLagAtEnd, Failed: s.Failed, P99Ms: s.Publish.P99}
	st.Sustained = st.Acked >= 0.95*target && st.Consumed >= 0.95*target && float64(st.LagAtEnd) <= target && st.Failed == 0
	return st
}

// Search finds the highest rate the cluster sustains with its consumers
// keeping up (OpenMessaging Benchmark's producerRate=0): it doubles the
// rate from sc.Start while each step is sustained, then bisects between
// the highest sustained and the lowest failed rate, each step a run of the
// workload on a fresh topic. It returns the search and the report of the
// highest sustained step (nil if none was).
func Search(ctx context.Context, w Workload, sc SearchConfig, opt RunOptions) (*SearchResult, *Report, error) {
	if sc.Start <= 0 || sc.MaxSteps < 1 || sc.Step <= 0 {
		return nil, nil, fmt.Errorf("bench: search: start %v, step %v, max steps %d: want all positive", sc.Start, sc.Step, sc.MaxSteps)
	}
	res := &SearchResult{Criterion: SearchCriterion}
	w.Duration = w.Warmup + sc.Step
	var best *Report
	good, bad := 0.0, 0.0
	rate := sc.Start
	for range sc.MaxSteps {
		w.Rate = rate
		rep, err := Run(ctx, w, opt)
		if err != nil && !errors.Is(err, ErrAudit) {
			return res, best, fmt.Errorf("bench: search at %.0f records/s: %w", rate, err)
		}
		if err != nil {
			return res, rep, fmt.Errorf("bench: search at %.0f records/s: %w", rate, err)
		}
		st := sustained(rate, rep)
		res.Steps = append(res.Steps, st)
		if opt.Log != nil {
			opt.Log.Info("search step", "target", rate, "acked", st.Acked, "consumed", st.Consumed, "lag", st.LagAtEnd, "sustained", st.Sustained)
		}
		if st.Sustained {
			good, best = rate, rep
		} else {
			bad = rate
		}
		switch {
		case bad == 0:
			rate *= 2
		case good == 0:
			rate /= 2
		default:
			if (bad-good)/good < sc.Precision {
				res.Sustained = good
				return res, best, nil
			}
			rate = (good + bad) / 2
		}
	}
	res.Sustained = good
	return res, best, nil
}
