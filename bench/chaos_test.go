package bench

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// testLogWriter sends log lines to t.Log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// runLocal runs w with run (Run, or a wrapper of it) against the local
// cluster lc, logs the report's summary and, with more, what more writes,
// and fails t if the run failed.
func runLocal(t *testing.T, lc LocalCluster, w Workload, run func(context.Context, Workload, RunOptions) (*Report, error), more func(*Report) string) *Report {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, nil))
	rep, err := WithLocalCluster(context.Background(), lc, w, RunOptions{Log: log}, run)
	if rep != nil {
		var sum strings.Builder
		rep.WriteSummary(&sum)
		t.Log("\n" + sum.String())
		if more != nil {
			t.Log("\n" + more(rep))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestChaosSeeded runs a seeded chaos schedule of about 40 s against a
// local cluster of three that the runner starts: every fault kind (the
// network cuts too when the test runs as root on Linux), one at a time,
// while 100 records/s are produced to a partition with three replicas.
// The audit must be clean: no acknowledged record lost, no offset with two
// records. Timings are reported, never asserted.
func TestChaosSeeded(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a local cluster for about a minute")
	}
	netns := netnsSupported() == nil
	if !netns {
		t.Logf("no network cuts: %v", netnsSupported())
	}
	lc := LocalCluster{
		Binary: pubg1Binary(t), Brokers: 3, Netns: netns,
		Args:  []string{"--log-level", "warn", "--group-initial-rebalance-delay", "0s"},
		Chaos: true, Seed: 7, ChaosDuration: 40 * time.Second,
	}
	w := DefaultWorkload()
	w.Partitions, w.Replication = 1, 3
	w.Rate, w.RecordSize = 100, 200
	w.Duration, w.Warmup = 48*time.Second, 0
	w.DrainTimeout = 90 * time.Second
	rep := runLocal(t, lc, w, Run, nil)
	seen := make(map[FaultKind]bool)
	for _, f := range rep.Faults {
		if f.Event.Err != "" {
			t.Errorf("%s at %.1f s failed: %s", f.Event.Kind, f.At, f.Event.Err)
		}
		seen[f.Event.Kind] = true
	}
	for _, k := range FaultKinds() {
		if k.NeedsNetns() || k == NetHeal {
			if !netns {
				continue
			}
		}
		if !seen[k] {
			t.Errorf("no %s in the run: %v", k, seen)
		}
	}
	if !rep.Audit.OK() || rep.Audit.Acked == 0 || rep.Cluster == nil || !rep.Cluster.Chaos {
		t.Fatalf("audit %+v, cluster %+v", rep.Audit, rep.Cluster)
	}
}
