package compattests

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// benchRecords is how many records of benchRecordSize bytes each case of
// BenchmarkTransactions writes.
const (
	benchRecords    = 1_000_000
	benchRecordSize = 100
)

// BenchmarkTransactions compares, against the same broker in the same run,
// an idempotent producer with a transactional one committing every 1,000
// records and every 100 ms (franz-go, acks=all, no compression, 8
// partitions), on one broker and on three (replication factor 3). It
// reports records per second and the time EndTxn takes (the markers
// durable on every partition), median and 99th percentile.
//
//	go test ./compat-tests -run '^$' -bench Transactions -benchtime 1x
func BenchmarkTransactions(b *testing.B) {
	for _, setup := range []struct {
		name  string
		seeds func(b *testing.B) ([]string, *kadm.Client)
		rf    int16
	}{
		{"single", func(b *testing.B) ([]string, *kadm.Client) {
			br := startBroker(b)
			return []string{br.Addr()}, kadm.NewClient(newClient(b, br))
		}, 1},
		{"rf3", func(b *testing.B) ([]string, *kadm.Client) {
			c := startClusterOf(b, 3)
			return c.addrs([]int32{1, 2, 3}), kadm.NewClient(c.client(nil))
		}, 3},
	} {
		b.Run(setup.name, func(b *testing.B) {
			seeds, adm := setup.seeds(b)
			ctx := testContext(b, 10*time.Minute)
			for _, mode := range []struct {
				name    string
				txn     bool
				records int
				every   time.Duration
			}{
				{"idempotent", false, 0, 0},
				{"txn-1000-records", true, 1000, 0},
				{"txn-100ms", true, 0, 100 * time.Millisecond},
			} {
				b.Run(mode.name, func(b *testing.B) {
					for i := range b.N {
						// Unique across -count runs, which share the broker.
						topic := fmt.Sprintf("bench-%s-%d-%d", mode.name, time.Now().UnixNano(), i)
						if _, err := adm.CreateTopic(ctx, 8, setup.rf, nil, topic); err != nil {
							b.Fatal(err)
						}
						rate, ends, flushes, firsts := benchProduce(ctx, b, seeds, topic, mode.txn, mode.records, mode.every)
						b.ReportMetric(rate, "records/s")
						if len(ends) > 0 {
							slices.Sort(ends)
							b.ReportMetric(float64(ends[len(ends)/2].Microseconds())/1000, "endtxn-p50-ms")
							b.ReportMetric(float64(ends[len(ends)*99/100].Microseconds())/1000, "endtxn-p99-ms")
							slices.Sort(flushes)
							b.ReportMetric(float64(flushes[len(flushes)/2].Microseconds())/1000, "flush-p50-ms")
							slices.Sort(firsts)
							b.ReportMetric(float64(firsts[len(firsts)/2].Microseconds())/1000, "first-ack-p50-ms")
						}
					}
				})
			}
		})
	}
}

// benchProduce writes benchRecords records to topic as fast as one
// producer goes and returns its rate and, for a transactional producer,
// how long each EndTxn and each flush before it took, and how long after
// each transaction began its first record was acknowledged.
func benchProduce(ctx context.Context, b *testing.B, seeds []string, topic string, txn bool, every int, interval time.Duration) (float64, []time.Duration, []time.Duration, []time.Duration) {
	b.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(50_000), kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}
	if txn {
		opts = append(opts, kgo.TransactionalID(topic))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, benchRecordSize)
	var failed error
	var firstAck atomic.Int64 // when the transaction's first record was acknowledged (UnixNano), or 0
	promise := func(_ *kgo.Record, err error) {
		if err != nil && failed == nil {
			failed = err
		}
		firstAck.CompareAndSwap(0, time.Now().UnixNano())
	}
	var ends, flushes, firsts []time.Duration
	start := time.Now()
	sent := 0
	for sent < benchRecords {
		if txn {
			if err := cl.BeginTransaction(); err != nil {
				b.Fatal(err)
			}
		}
		began := time.Now()
		firstAck.Store(0)
		for n := 0; sent < benchRecords; n++ {
			if txn && (every > 0 && n == every || interval > 0 && n%100 == 0 && time.Since(began) >= interval) {
				break
			}
			cl.Produce(ctx, &kgo.Record{Value: value}, promise)
			sent++
		}
		flushed := time.Now()
		if err := cl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
		if txn {
			flushes = append(flushes, time.Since(flushed))
			firsts = append(firsts, time.Unix(0, firstAck.Load()).Sub(began))
			t0 := time.Now()
			if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
				b.Fatal(err)
			}
			ends = append(ends, time.Since(t0))
		}
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if failed != nil {
		b.Fatal(failed)
	}
	return float64(benchRecords) / time.Since(start).Seconds(), ends, flushes, firsts
}
