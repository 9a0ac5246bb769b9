// Package bench measures produce and fetch throughput and latency of any
// Kafka-compatible cluster (PubG1 or Apache Kafka) with a stock client.
package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config describes one run.
type Config struct {
	Brokers    []string
	Topic      string
	Partitions int32
	Records    int
	RecordSize int
	// Acks is -1 (all), 1 (leader) or 0 (none).
	Acks int16
	// MaxBuffered bounds records in flight in the producer.
	MaxBuffered int
	// Rate paces the producer at this many records per second; zero
	// produces as fast as the producer allows. Ack latency is only
	// comparable between systems at the same offered rate below both
	// systems' capacity: at full speed it is mostly the producer's own
	// queue (MaxBuffered records waiting their turn).
	Rate int
	// Linger is how long the producer waits to fill a batch before it
	// sends one (franz-go's ProducerLinger); negative keeps the client's
	// default (10ms in franz-go; Kafka's Java producer used 0 until 4.0).
	Linger time.Duration
	// Timeout bounds the whole run.
	Timeout time.Duration
}

// DefaultConfig is 1,000,000 records of 100 bytes at acks=all.
func DefaultConfig() Config {
	return Config{
		Brokers:     []string{"127.0.0.1:9092"},
		Topic:       "pubg1-bench",
		Partitions:  8,
		Records:     1_000_000,
		RecordSize:  100,
		Acks:        -1,
		MaxBuffered: 100_000,
		Linger:      -1,
		Timeout:     5 * time.Minute,
	}
}

// Result is a throughput measurement.
type Result struct {
	Records int64
	Bytes   int64 // payload bytes
	Elapsed time.Duration
	// Ack latency percentiles, for produce runs.
	P50, P99, P999, Max time.Duration
}

// RecordsPerSec is the record rate.
func (r Result) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// MBPerSec is the payload rate in MB/s (10^6 bytes).
func (r Result) MBPerSec() float64 { return float64(r.Bytes) / 1e6 / r.Elapsed.Seconds() }

func (r Result) String() string {
	s := fmt.Sprintf("%d records in %v: %.0f records/s, %.1f MB/s", r.Records, r.Elapsed.Round(time.Millisecond), r.RecordsPerSec(), r.MBPerSec())
	if r.Max > 0 {
		s += fmt.Sprintf(", ack latency p50 %v p99 %v p99.9 %v max %v", r.P50, r.P99, r.P999, r.Max)
	}
	return s
}

// EnsureTopic creates the topic with cfg.Partitions if it does not exist.
func EnsureTopic(ctx context.Context, cfg Config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		return fmt.Errorf("bench: client: %w", err)
	}
	defer cl.Close()
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, cfg.Partitions, -1, nil, cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("bench: creating topic %s: %w", cfg.Topic, err)
	}
	return nil
}

// Produce sends cfg.Records records of cfg.RecordSize bytes, as fast as the
// producer allows or at cfg.Rate, and measures the rate and each record's
// ack latency (from the moment the record is handed to the producer).
func Produce(ctx context.Context, cfg Config) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	acks := kgo.AllISRAcks()
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.MaxBufferedRecords(cfg.MaxBuffered),
		kgo.ProducerBatchCompression(kgo.NoCompression()),
	}
	if cfg.Linger >= 0 {
		opts = append(opts, kgo.ProducerLinger(cfg.Linger))
	}
	switch cfg.Acks {
	case 1:
		acks = kgo.LeaderAck()
		opts = append(opts, kgo.DisableIdempotentWrite())
	case 0:
		acks = kgo.NoAck()
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	opts = append(opts, kgo.RequiredAcks(acks))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return Result{}, fmt.Errorf("bench: producer: %w", err)
	}
	defer cl.Close()
	// Warm up metadata and connections so they are not in the latency.
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: make([]byte, cfg.RecordSize)}).FirstErr(); err != nil {
		return Result{}, fmt.Errorf("bench: warm-up produce: %w", err)
	}

	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	var (
		mu       sync.Mutex
		firstErr error
		failed   atomic.Int64
	)
	// One promise for every record: franz-go stamps each record's
	// Timestamp when it is produced, so the ack latency needs no per-record
	// closure or clock read here.
	promise := func(r *kgo.Record, err error) {
		lat := time.Since(r.Timestamp)
		mu.Lock()
		if err != nil {
			failed.Add(1)
			if firstErr == nil {
				firstErr = err
			}
		} else {
			_ = hist.RecordValue(lat.Microseconds())
		}
		mu.Unlock()
	}
	value := make([]byte, cfg.RecordSize)
	start := time.Now()
	for i := 0; i < cfg.Records && ctx.Err() == nil; i++ {
		if cfg.Rate > 0 && i%pacingStep == 0 {
			due := start.Add(time.Duration(float64(i) / float64(cfg.Rate) * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
			}
		}
		cl.Produce(ctx, &kgo.Record{Value: value}, promise)
	}
	flushErr := cl.Flush(ctx)
	elapsed := time.Since(start)
	if firstErr != nil {
		return Result{}, fmt.Errorf("bench: %d records failed: %w", failed.Load(), firstErr)
	}
	if flushErr != nil {
		return Result{}, fmt.Errorf("bench: produce did not finish: %w", flushErr)
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("bench: produce did not finish: %w", err)
	}
	us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
	return Result{
		Records: int64(cfg.Records),
		Bytes:   int64(cfg.Records) * int64(cfg.RecordSize),
		Elapsed: elapsed,
		P50:     us(hist.ValueAtQuantile(50)),
		P99:     us(hist.ValueAtQuantile(99)),
		P999:    us(hist.ValueAtQuantile(99.9)),
		Max:     us(hist.Max()),
	}, nil
}

// pacingStep is how many records a paced producer hands over at once.
const pacingStep = 500

// Consume reads cfg.Records records from the start of every partition and
// measures the rate.
func Consume(ctx context.Context, cfg Config) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(8<<20),
	)
	if err != nil {
		return Result{}, fmt.Errorf("bench: consumer: %w", err)
	}
	defer cl.Close()
	var n, bytes int64
	start := time.Now()
	for n < int64(cfg.Records) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("bench: consumed %d of %d records: %w", n, cfg.Records, err)
		}
		if err := fs.Err(); err != nil {
			return Result{}, fmt.Errorf("bench: fetch: %w", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			bytes += int64(len(r.Value))
		})
	}
	return Result{Records: n, Bytes: bytes, Elapsed: time.Since(start)}, nil
}
