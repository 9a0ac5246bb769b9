package compattests

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The topic BenchmarkFetchSessions reads: fetchBenchRecords records of
// benchRecordSize bytes spread over fetchBenchPartitions partitions.
const (
	fetchBenchPartitions = 1000
	fetchBenchRecords    = 1_000_000
	// fetchBenchRounds is how many times each consumer reads the topic,
	// the two kinds in turn; the fastest read of each kind counts, and the
	// last one measures idle polling.
	fetchBenchRounds = 2
	// fetchBenchIdle is how long the consumer's polling is measured once
	// it has read everything and fetchBenchSettle has passed (its first
	// Fetches then still carry the offsets it moved); fetchBenchMaxWait is
	// its fetch.max.wait.ms, short so that an idle consumer sends several
	// Fetches a second.
	fetchBenchIdle    = 3 * time.Second
	fetchBenchSettle  = 500 * time.Millisecond
	fetchBenchMaxWait = 100 * time.Millisecond
)

// fetchBytes counts the bytes of the Fetch requests a client writes and of
// the answers it reads.
type fetchBytes struct {
	sent, received, requests atomic.Int64
}

func (f *fetchBytes) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, n int, _, _ time.Duration, _ error) {
	if key == kmsg.Fetch.Int16() {
		f.sent.Add(int64(n))
		f.requests.Add(1)
	}
}

func (f *fetchBytes) OnBrokerRead(_ kgo.BrokerMetadata, key int16, n int, _, _ time.Duration, _ error) {
	if key == kmsg.Fetch.Int16() {
		f.received.Add(int64(n))
	}
}

// fetchBenchResult is one consumer's run.
type fetchBenchResult struct {
	recordsPerSec float64
	// Per second of idle polling: Fetch bytes sent and received, and
	// Fetch requests.
	idleSent, idleReceived, idleRequests float64
}

// BenchmarkFetchSessions compares, in one run against one broker, a
// franz-go consumer of a 1,000-partition topic with fetch sessions
// (KIP-227) and one without (kgo.DisableFetchSessions): records read per
// second by a new consumer from the start of the topic (1,000,000 records
// of 100 B, the faster of two reads), and the Fetch bytes the consumer
// sends and receives per second while it polls with nothing new to read
// (fetch.max.wait.ms 100 ms). The ratios are without sessions over with.
//
//	go test ./compat-tests -run '^$' -bench FetchSessions -benchtime 1x
func BenchmarkFetchSessions(b *testing.B) {
	br := startBroker(b)
	adm := newAdmin(b, br)
	ctx := testContext(b, 5*time.Minute)
	for i := range b.N {
		topic := fmt.Sprintf("fetch-sessions-%d", i)
		createTopic(ctx, b, adm, topic, fetchBenchPartitions, nil)
		fillFetchBenchTopic(ctx, b, br, topic)
		// The first read of a topic just written is slower whoever
		// makes it: an untimed one first.
		runFetchBench(ctx, b, br, topic, false, false)
		var with, without fetchBenchResult
		for round := range fetchBenchRounds {
			last := round == fetchBenchRounds-1
			for _, sessions := range []bool{true, false} {
				res := runFetchBench(ctx, b, br, topic, sessions, last)
				best := &without
				if sessions {
					best = &with
				}
				rate := max(best.recordsPerSec, res.recordsPerSec)
				if last {
					*best = res
				}
				best.recordsPerSec = rate
			}
		}
		b.ReportMetric(with.recordsPerSec, "sessions-records/s")
		b.ReportMetric(without.recordsPerSec, "nosessions-records/s")
		b.ReportMetric(with.idleSent, "sessions-idle-sent-B/s")
		b.ReportMetric(without.idleSent, "nosessions-idle-sent-B/s")
		b.ReportMetric(with.idleReceived, "sessions-idle-recv-B/s")
		b.ReportMetric(without.idleReceived, "nosessions-idle-recv-B/s")
		b.ReportMetric(with.idleRequests, "sessions-idle-fetches/s")
		b.ReportMetric(without.idleRequests, "nosessions-idle-fetches/s")
		b.ReportMetric(without.recordsPerSec/with.recordsPerSec, "records/s-ratio")
		b.ReportMetric(without.idleSent/with.idleSent, "idle-sent-ratio")
		b.ReportMetric(without.idleReceived/with.idleReceived, "idle-recv-ratio")
	}
}

// fillFetchBenchTopic writes fetchBenchRecords records round-robin over
// the topic's partitions.
func fillFetchBenchTopic(ctx context.Context, b *testing.B, br *brokerProc, topic string) {
	b.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MaxBufferedRecords(50_000), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, benchRecordSize)
	var failed atomic.Pointer[error]
	for range fetchBenchRecords {
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
}

// runFetchBench reads the whole topic with a new consumer and, if
// measureIdle, then polls with nothing new.
func runFetchBench(ctx context.Context, b *testing.B, br *brokerProc, topic string, sessions, measureIdle bool) fetchBenchResult {
	b.Helper()
	counts := &fetchBytes{}
	opts := []kgo.Opt{kgo.SeedBrokers(br.Addr()), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(fetchBenchMaxWait), kgo.WithHooks(counts)}
	if !sessions {
		opts = append(opts, kgo.DisableFetchSessions())
	}
	start := time.Now()
	// Closed on return, so that it does not poll during the next run.
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	read := 0
	for read < fetchBenchRecords {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			b.Fatalf("read %d of %d records: %v", read, fetchBenchRecords, err)
		}
		fs.EachError(func(t string, p int32, err error) { b.Fatalf("fetch %s/%d: %v", t, p, err) })
		read += fs.NumRecords()
	}
	var res fetchBenchResult
	res.recordsPerSec = float64(read) / time.Since(start).Seconds()
	if !measureIdle {
		return res
	}

	poll := func(d time.Duration) {
		idle, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		for idle.Err() == nil {
			if n := cl.PollFetches(idle).NumRecords(); n != 0 {
				b.Fatalf("%d records after the whole topic was read", n)
			}
		}
	}
	poll(fetchBenchSettle)
	sent, received, requests := counts.sent.Load(), counts.received.Load(), counts.requests.Load()
	idleStart := time.Now()
	poll(fetchBenchIdle)
	secs := time.Since(idleStart).Seconds()
	res.idleSent = float64(counts.sent.Load()-sent) / secs
	res.idleReceived = float64(counts.received.Load()-received) / secs
	res.idleRequests = float64(counts.requests.Load()-requests) / secs
	return res
}
