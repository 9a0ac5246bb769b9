package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// buildBinary builds cmd/pubg1 into dir.
func buildBinary(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "pubg1")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/pubg1").CombinedOutput()
	if err != nil {
		tb.Fatalf("building pubg1: %v\n%s", err, out)
	}
	return bin
}

// startBroker runs a broker process with its data in a temporary directory.
func startBroker(tb testing.TB, bin string, args ...string) *Proc {
	tb.Helper()
	addr, err := FreeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proc{Binary: bin, Addr: addr, Args: append([]string{"--data", tb.TempDir(), "--log-level", "warn"}, args...)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	return p
}

// BenchmarkSingleBroker measures acks=all produce and fetch of 1,000,000
// records of 100 bytes and 1 KiB against one broker process. Run it with
// -benchtime 1x; PUBG1_BENCH_RECORDS overrides the record count.
func BenchmarkSingleBroker(b *testing.B) {
	bin := buildBinary(b, b.TempDir())
	records := 1_000_000
	if v := os.Getenv("PUBG1_BENCH_RECORDS"); v != "" {
		if _, err := fmt.Sscan(v, &records); err != nil {
			b.Fatalf("PUBG1_BENCH_RECORDS: %v", err)
		}
	}
	for _, size := range []int{100, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				proc := startBroker(b, bin)
				cfg := DefaultConfig()
				cfg.Brokers = []string{proc.Addr}
				cfg.Records, cfg.RecordSize = records, size
				ctx := context.Background()
				if err := EnsureTopic(ctx, cfg); err != nil {
					b.Fatal(err)
				}
				prod, err := Produce(ctx, cfg)
				if err != nil {
					b.Fatalf("%v\n%s", err, proc.Output())
				}
				cons, err := Consume(ctx, cfg)
				if err != nil {
					b.Fatalf("%v\n%s", err, proc.Output())
				}
				b.ReportMetric(prod.RecordsPerSec(), "produce-rec/s")
				b.ReportMetric(prod.MBPerSec(), "produce-MB/s")
				b.ReportMetric(float64(prod.P50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(prod.P99.Microseconds())/1000, "p99-ms")
				b.ReportMetric(cons.RecordsPerSec(), "fetch-rec/s")
				b.ReportMetric(cons.MBPerSec(), "fetch-MB/s")
				b.Logf("produce %v", prod)
				b.Logf("fetch   %v", cons)
				proc.Stop()
			}
		})
	}
}
