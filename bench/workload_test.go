package bench

import (
	"context"
	"image/png"
	"os"
	"strings"
	"testing"
	"time"
)

// smallWorkload is a few seconds at a low rate against brokers.
func smallWorkload(brokers ...string) Workload {
	w := DefaultWorkload()
	w.Brokers = brokers
	w.Partitions = 2
	w.Rate = 200
	w.Duration, w.Warmup = 3*time.Second, time.Second
	w.RecordSize = 200
	w.Producers = 2
	w.DrainTimeout = 60 * time.Second
	return w
}

func TestRunSingleBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker")
	}
	p := startBroker(t, pubg1Binary(t), "--group-initial-rebalance-delay", "0s")
	w := smallWorkload(p.Addr)
	w.Keys, w.SizeDist = KeysZipf, SizeExp
	var progress strings.Builder
	rep, err := Run(context.Background(), w, RunOptions{Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, p.Output())
	}
	s := rep.Summary
	if s.Acked == 0 || s.Acked != s.Sent || s.Failed != 0 {
		t.Fatalf("sent %d, acknowledged %d, failed %d", s.Sent, s.Acked, s.Failed)
	}
	if rep.Audit.Lost != 0 || rep.Audit.Acked != s.Acked || s.Consumed < s.Acked || s.Foreign != 0 {
		t.Fatalf("audit %+v, consumed %d", rep.Audit, s.Consumed)
	}
	if s.Publish.Count == 0 || s.EndToEnd.Count == 0 || len(rep.Series) == 0 {
		t.Fatalf("no latencies or series: %+v", s)
	}
	if rep.Target.APIVersionsSHA256 == "" || rep.Target.ClusterID == "" {
		t.Fatalf("target not described: %+v", rep.Target)
	}
	if !strings.Contains(progress.String(), "rec/s") {
		t.Fatalf("no progress line: %q", progress.String())
	}
	dir := t.TempDir()
	files, err := rep.WriteFiles(dir, "run")
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, files)
	validateReport(t, files[0])
	var sum strings.Builder
	rep.WriteSummary(&sum)
	for _, want := range []string{"publish", "end-to-end", "audit", "lost 0"} {
		if !strings.Contains(sum.String(), want) {
			t.Fatalf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

// checkFiles checks that the JSON and PNG files exist and the PNGs decode.
func checkFiles(t *testing.T, files []string) {
	t.Helper()
	var pngs int
	for _, f := range files {
		if !strings.HasSuffix(f, ".png") {
			continue
		}
		pngs++
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = png.Decode(fh)
		fh.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if pngs != len(plotSpecs) {
		t.Fatalf("%d plots written, want %d: %v", pngs, len(plotSpecs), files)
	}
}
