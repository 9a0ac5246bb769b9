package streams_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/streams"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkTumblingCount measures records/s through a count over 10 s
// tumbling windows of 100 keys, of 100-byte JSON events 1 ms apart in
// event time (100 records per window and key: one result per 100 input
// records), with exactly-once on and, for reference, at-least-once, by one
// processor and by two sharing the input's 4 partitions. Run with
// -benchtime 1x; each run processes benchRecords records.
func BenchmarkTumblingCount(b *testing.B) {
	const benchRecords = 10_000_000
	br := brokertest.Run(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	createTopic(ctx, b, br.Addr(), "bench-in", 4)
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		b.Fatal(err)
	}
	start := time.UnixMilli(1_700_000_000_000)
	for i := range benchRecords {
		key := fmt.Sprintf("user-%03d", i%100)
		v := fmt.Appendf(nil, `{"user":%q,"item":"item-%04d","price":%d.%02d,"note":"padding-to-100-bytes"}`, key, i%5000, i%100, i%97)
		cl.Produce(ctx, &kgo.Record{Topic: "bench-in", Key: []byte(key), Value: v, Timestamp: start.Add(time.Duration(i) * time.Millisecond)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	cl.Close()
	for i, mode := range []struct {
		name        string
		atLeastOnce bool
		instances   int
		aggs        []streams.Agg
	}{
		{"exactly-once/1", false, 1, []streams.Agg{streams.Count()}},
		{"at-least-once/1", true, 1, []streams.Agg{streams.Count()}},
		{"exactly-once/2", false, 2, []streams.Agg{streams.Count()}},
		// The JSON value parsed for a field, besides.
		{"exactly-once/1/avg", false, 1, []streams.Agg{streams.Count(), streams.Avg("price")}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			for n := range b.N {
				app := fmt.Sprintf("bench-%d-%d", i, n)
				var in atomic.Int64
				rctx, stop := context.WithCancel(ctx)
				done := make(chan error, mode.instances)
				for range mode.instances {
					var mine atomic.Int64
					cfg := streams.Config{
						Brokers: []string{br.Addr()}, AppID: app, Input: "bench-in", Output: app + "-out",
						Window: streams.Tumbling(10 * time.Second), Aggs: mode.aggs,
						StateDir: b.TempDir(), AtLeastOnce: mode.atLeastOnce,
						Logger:   zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.WarnLevel),
						Progress: func(s streams.Stats) { in.Add(s.In - mine.Swap(s.In)) },
					}
					go func() { done <- streams.Run(rctx, cfg) }()
				}
				// Timed from the first commit, past the group's join.
				for in.Load() == 0 && rctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
				began, first := time.Now(), in.Load()
				for in.Load() < benchRecords && rctx.Err() == nil {
					time.Sleep(10 * time.Millisecond)
				}
				took := time.Since(began)
				stop()
				for range mode.instances {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(benchRecords-first)/took.Seconds(), "rec/s")
			}
		})
	}
}
