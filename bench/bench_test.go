package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// startCluster runs n broker processes that are peers of each other.
func startCluster(tb testing.TB, bin string, n int, args ...string) []*Proc {
	tb.Helper()
	var addrs []string
	for range n {
		addr, err := FreeAddr()
		if err != nil {
			tb.Fatal(err)
		}
		addrs = append(addrs, addr)
	}
	var procs []*Proc
	for i, addr := range addrs {
		p := &Proc{Binary: bin, Addr: addr, Args: append([]string{
			"--id", fmt.Sprint(i + 1), "--peers", Peers(addrs),
			"--data", tb.TempDir(), "--log-level", "warn"}, args...)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := p.Start(ctx)
		cancel()
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(p.Stop)
		procs = append(procs, p)
	}
	return procs
}

// BenchmarkReplicated measures acks=all produce with 100-byte records
// against one broker and against three brokers with replication factor 3,
// in the same run, and reports the ratio: once as fast as the producer
// goes (throughput), then paced at 245,000 records/s (the rate Kafka 2.4
// sustains on this kind of machine with replication factor 3) and at
// 400,000 records/s, for ack latency at a fixed load. Each paced run lasts
// ten seconds. Run it with -benchtime 1x; PUBG1_BENCH_RECORDS overrides
// the record count of the unpaced runs and PUBG1_BENCH_RATE the higher
// paced rate.
func BenchmarkReplicated(b *testing.B) {
	bin := buildBinary(b, b.TempDir())
	records := envInt(b, "PUBG1_BENCH_RECORDS", 1_000_000)
	rates := []int{kafkaRate, envInt(b, "PUBG1_BENCH_RATE", 400_000)}
	for i := 0; i < b.N; i++ {
		run := func(addr string, rate int) Result {
			cfg := DefaultConfig()
			cfg.Brokers = []string{addr}
			cfg.Records, cfg.Rate = records, rate
			if rate > 0 {
				cfg.Records = rate * pacedSeconds
			}
			ctx := context.Background()
			if err := EnsureTopic(ctx, cfg); err != nil {
				b.Fatal(err)
			}
			res, err := Produce(ctx, cfg)
			if err != nil {
				b.Fatal(err)
			}
			return res
		}
		measure := func(addr string) []Result {
			res := []Result{run(addr, 0)}
			for _, r := range rates {
				res = append(res, run(addr, r))
			}
			return res
		}
		single := startBroker(b, bin)
		base := measure(single.Addr)
		single.Stop()
		procs := startCluster(b, bin, 3)
		repl := measure(procs[0].Addr)
		for _, p := range procs {
			p.Stop()
		}
		b.Logf("single broker:         %v", base[0])
		b.Logf("3 brokers, 3 replicas: %v", repl[0])
		b.ReportMetric(base[0].RecordsPerSec(), "single-rec/s")
		b.ReportMetric(repl[0].RecordsPerSec(), "rf3-rec/s")
		b.ReportMetric(repl[0].RecordsPerSec()/base[0].RecordsPerSec(), "rf3/single")
		for j, r := range rates {
			b.Logf("single broker at %d/s:         %v", r, base[j+1])
			b.Logf("3 brokers, 3 replicas at %d/s: %v", r, repl[j+1])
			b.ReportMetric(float64(base[j+1].P99.Microseconds())/1000, fmt.Sprintf("single-p99-ms@%dk", r/1000))
			b.ReportMetric(float64(repl[j+1].P99.Microseconds())/1000, fmt.Sprintf("rf3-p99-ms@%dk", r/1000))
		}
	}
}

// kafkaRate is the produce rate (100-byte records, acks=all, replication
// factor 3) that Apache Kafka 2.4 sustains on a machine of 2 cores hosting
// three brokers and the client; pacedSeconds is how long a paced run lasts.
const (
	kafkaRate    = 245_000
	pacedSeconds = 10
)

func envInt(tb testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var n int
	if _, err := fmt.Sscan(v, &n); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return n
}

// BenchmarkIdleCluster measures the CPU that three brokers spend on 150
// idle partitions each (a topic of 100 partitions and the 50 of
// __consumer_offsets, replication factor 3), as a share of one core per
// broker; it reports the busiest broker.
func BenchmarkIdleCluster(b *testing.B) {
	bin := buildBinary(b, b.TempDir())
	for i := 0; i < b.N; i++ {
		procs := startCluster(b, bin, 3)
		cfg := DefaultConfig()
		cfg.Brokers, cfg.Topic, cfg.Partitions, cfg.Records = []string{procs[0].Addr}, "idle", 100, 1
		if err := EnsureTopic(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		if _, err := Produce(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second) // let elections and leader reports settle
		before := cpuTimes(b, procs)
		const window = 20 * time.Second
		time.Sleep(window)
		after := cpuTimes(b, procs)
		var worst float64
		for j := range procs {
			share := (after[j] - before[j]).Seconds() / window.Seconds() * 100
			b.Logf("broker %d: %.1f%% of a core", j+1, share)
			worst = max(worst, share)
		}
		b.ReportMetric(worst, "max-%core")
	}
}

// cpuTimes reads each process's user+system CPU time from /proc.
func cpuTimes(tb testing.TB, procs []*Proc) []time.Duration {
	tb.Helper()
	out := make([]time.Duration, len(procs))
	for i, p := range procs {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
		if err != nil {
			tb.Fatal(err)
		}
		// Fields after the ")" that ends the command name; utime and
		// stime are the 14th and 15th of the whole line.
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
		var utime, stime int64
		fmt.Sscan(fields[11], &utime)
		fmt.Sscan(fields[12], &stime)
		out[i] = time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return out
}
