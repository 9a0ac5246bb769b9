package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkPartitions measures acks=all produce at 1, 8, 64 and 1,000
// partitions with records of 100 bytes and 1 KiB, against one broker and
// against three brokers with replication factor 3, in one run, and reports
// each rate with the ratios the speed targets are stated in: replicated to
// single broker for each cell, and 1,000 to 8 partitions for each setup.
// Run it with -benchtime 1x; PUBG1_BENCH_RECORDS overrides the count of
// 100-byte records (a quarter as many 1 KiB records are sent) and
// PUBG1_BENCH_PARTITIONS the partition counts (comma-separated).
func BenchmarkPartitions(b *testing.B) {
	bin := buildBinary(b, b.TempDir())
	records := envInt(b, "PUBG1_BENCH_RECORDS", 1_000_000)
	counts := envInts(b, "PUBG1_BENCH_PARTITIONS", []int{1, 8, 64, 1000})
	sizes := []int{100, 1024}
	type cell struct{ partitions, size int }
	for i := 0; i < b.N; i++ {
		measure := func(setup, addr string) map[cell]Result {
			out := make(map[cell]Result)
			for _, size := range sizes {
				for _, n := range counts {
					cfg := DefaultConfig()
					cfg.Brokers = []string{addr}
					cfg.Topic = fmt.Sprintf("p%d-s%d", n, size)
					cfg.Partitions = int32(n)
					cfg.RecordSize = size
					cfg.Records = records
					if size > 100 {
						cfg.Records = records / 4
					}
					ctx := context.Background()
					if err := createAndLead(ctx, []string{addr}, cfg.Topic, n, -1); err != nil {
						b.Fatal(err)
					}
					res, err := Produce(ctx, cfg)
					if err != nil {
						b.Fatalf("%s, %d partitions, %d B: %v", setup, n, size, err)
					}
					b.Logf("%-6s %4d partitions %4d B: %v", setup, n, size, res)
					out[cell{n, size}] = res
				}
			}
			return out
		}
		single := startBroker(b, bin)
		base := measure("single", single.Addr)
		single.Stop()
		procs := startCluster(b, bin, 3)
		repl := measure("rf3", procs[0].Addr)
		for _, p := range procs {
			p.Stop()
		}
		for _, size := range sizes {
			for _, n := range counts {
				c := cell{n, size}
				b.ReportMetric(base[c].RecordsPerSec(), fmt.Sprintf("single-rec/s-p%d-%dB", n, size))
				b.ReportMetric(repl[c].RecordsPerSec(), fmt.Sprintf("rf3-rec/s-p%d-%dB", n, size))
				b.ReportMetric(repl[c].RecordsPerSec()/base[c].RecordsPerSec(), fmt.Sprintf("rf3/single-p%d-%dB", n, size))
			}
			many, eight := cell{1000, size}, cell{8, size}
			_, haveMany := base[many]
			_, haveEight := base[eight]
			if haveMany && haveEight {
				b.ReportMetric(base[many].RecordsPerSec()/base[eight].RecordsPerSec(), fmt.Sprintf("single-p1000/p8-%dB", size))
				b.ReportMetric(repl[many].RecordsPerSec()/repl[eight].RecordsPerSec(), fmt.Sprintf("rf3-p1000/p8-%dB", size))
			}
		}
	}
}

// BenchmarkPartitionScale measures what partition count costs three
// brokers with replication factor 3, at 1,000, 5,000 and 10,000 partitions
// (PUBG1_BENCH_PARTITIONS overrides): each broker's share of a core and
// resident memory while idle, how long all three take to exit when sent
// SIGTERM together, how long after they start again until every partition
// has a leader, and how long one broker takes to exit on its own. It
// reports the worst broker of each. Run it with -benchtime 1x.
func BenchmarkPartitionScale(b *testing.B) {
	bin := buildBinary(b, b.TempDir())
	counts := envInts(b, "PUBG1_BENCH_PARTITIONS", []int{1000, 5000, 10000})
	for i := 0; i < b.N; i++ {
		for _, n := range counts {
			b.Run(fmt.Sprintf("partitions=%d", n), func(b *testing.B) {
				measureScale(b, bin, n)
			})
		}
	}
}

func measureScale(b *testing.B, bin string, n int) {
	procs := startCluster(b, bin, 3)
	addrs := make([]string, len(procs))
	for i, p := range procs {
		addrs[i] = p.Addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	began := time.Now()
	if err := createAndLead(ctx, addrs, "scale", n, 3); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d partitions created and led in %v", n, time.Since(began).Round(10*time.Millisecond))

	time.Sleep(10 * time.Second) // let elections, leader reports and compactions settle
	before := cpuTimes(b, procs)
	const window = 20 * time.Second
	time.Sleep(window)
	after := cpuTimes(b, procs)
	var cpu, rss float64
	for j, p := range procs {
		share := (after[j] - before[j]).Seconds() / window.Seconds() * 100
		mb := rssMB(b, p)
		b.Logf("broker %d idle: %.1f%% of a core, %.0f MB resident", j+1, share, mb)
		cpu, rss = max(cpu, share), max(rss, mb)
	}

	took := stopAll(b, procs)
	b.Logf("all three brokers exited %v after SIGTERM", took.Round(10*time.Millisecond))
	began = time.Now()
	startAll(b, procs)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if err := waitLed(ctx, kadm.NewClient(cl), "scale", n); err != nil {
		b.Fatal(err)
	}
	restart := time.Since(began)
	b.Logf("after a full restart, every partition led in %v", restart.Round(10*time.Millisecond))

	time.Sleep(5 * time.Second)
	t0 := time.Now()
	if err := procs[2].Shutdown(time.Minute); err != nil {
		b.Fatal(err)
	}
	one := time.Since(t0)
	b.Logf("one broker exited %v after SIGTERM", one.Round(10*time.Millisecond))

	b.ReportMetric(cpu, "idle-max-%core")
	b.ReportMetric(rss, "idle-max-RSS-MB")
	b.ReportMetric(took.Seconds(), "stop-all-s")
	b.ReportMetric(restart.Seconds(), "restart-led-s")
	b.ReportMetric(one.Seconds(), "stop-one-s")
	for _, p := range procs {
		p.Stop()
	}
}

// stopAll sends SIGTERM to every broker at once and returns how long the
// slowest took to exit.
func stopAll(tb testing.TB, procs []*Proc) time.Duration {
	tb.Helper()
	began := time.Now()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.Shutdown(time.Minute) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	return time.Since(began)
}

// startAll starts every broker again at once, with its data.
func startAll(tb testing.TB, procs []*Proc) {
	tb.Helper()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			errs[i] = p.Start(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
}

// createAndLead creates the topic (replication -1: the broker's default)
// and waits until every partition has a leader. A creation that outlasts
// the request times out but goes on, as in Kafka; the wait covers it.
func createAndLead(ctx context.Context, addrs []string, topic string, n int, replication int16) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return fmt.Errorf("bench: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	adm.SetTimeoutMillis(int32((2 * time.Minute).Milliseconds()))
	resp, err := adm.CreateTopic(ctx, int32(n), replication, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) && !errors.Is(err, kerr.RequestTimedOut) {
		return fmt.Errorf("bench: creating %d partitions: %w", n, err)
	}
	return waitLed(ctx, adm, topic, n)
}

// waitLed waits until the metadata names a leader for each of the topic's
// n partitions.
func waitLed(ctx context.Context, adm *kadm.Client, topic string, n int) error {
	led := 0
	for {
		if md, err := adm.Metadata(ctx, topic); err == nil {
			led = 0
			for _, p := range md.Topics[topic].Partitions {
				if p.Leader >= 0 && p.Err == nil {
					led++
				}
			}
			if led == n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d partitions of %s have a leader: %w", led, n, topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rssMB reads a process's resident set size from /proc, in MB.
func rssMB(tb testing.TB, p *Proc) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				tb.Fatalf("VmRSS: %v", err)
			}
			return float64(kb) / 1000
		}
	}
	tb.Fatal("no VmRSS in /proc status")
	return 0
}

// envInts reads a comma-separated list of integers, or returns def.
func envInts(tb testing.TB, name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for f := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		out = append(out, n)
	}
	return out
}
