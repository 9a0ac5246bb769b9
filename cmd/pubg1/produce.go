package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// stdin is what topic produce reads.
var stdin io.Reader = os.Stdin

// maxLine bounds one record read from stdin.
const maxLine = 16 << 20

type topicProduceCmd struct {
	Brokers      string        `default:"127.0.0.1:9092" env:"PUBG1_BROKERS" help:"Comma-separated bootstrap brokers of any Kafka-compatible cluster."`
	Topic        string        `arg:"" help:"Topic to produce to."`
	KeySeparator string        `name:"key-separator" short:"K" help:"Split each line at the first SEP into key and value (a line without SEP has no key)."`
	Header       []string      `short:"H" sep:"none" placeholder:"KEY=VALUE" help:"A header on every record; repeatable."`
	Partition    int32         `default:"-1" help:"Partition to produce to (-1: by key, or spread when there is none)."`
	Compression  string        `default:"none" enum:"none,gzip,snappy,lz4,zstd" help:"Batch compression (${enum})."`
	Timeout      time.Duration `default:"30s" help:"How long a record may take to be acknowledged before the command fails."`
	Acks         int           `default:"-1" help:"Acknowledgements to wait for: -1 (all in-sync replicas), 0 (none), 1 (the leader)."`
}

// Run produces one record per line of stdin and waits until every record
// is acknowledged (with --acks 0, sent).
func (c *topicProduceCmd) Run() error {
	var headers []kgo.RecordHeader
	for _, h := range c.Header {
		k, v, ok := strings.Cut(h, "=")
		if !ok || k == "" {
			return fmt.Errorf("-H %s: not KEY=VALUE", h)
		}
		headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	if c.Acks < -1 || c.Acks > 1 {
		return fmt.Errorf("--acks %d: want -1, 0 or 1", c.Acks)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(c.Brokers, ",")...), kgo.DefaultProduceTopic(c.Topic), kgo.RecordDeliveryTimeout(c.Timeout)}
	switch c.Acks {
	case 0:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite())
	case 1:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	default:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	codec := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}[c.Compression]
	opts = append(opts, kgo.ProducerBatchCompression(codec))
	if c.Partition >= 0 {
		opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	}
	ctx, cl, done, err := connectClient(c.Brokers, opts)
	if err != nil {
		return err
	}
	defer done()

	var (
		mu       sync.Mutex
		firstErr error
		failed   int
		sent     int
	)
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 64<<10), maxLine)
	for in.Scan() {
		line := in.Text()
		r := &kgo.Record{Value: []byte(line), Headers: headers, Partition: c.Partition}
		if c.KeySeparator != "" {
			if k, v, ok := strings.Cut(line, c.KeySeparator); ok {
				r.Key, r.Value = []byte(k), []byte(v)
			}
		}
		sent++
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			failed++
			if firstErr == nil {
				firstErr = err
			}
		})
	}
	if err := in.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is longer than %d bytes", maxLine)
		}
		cl.Flush(ctx)
		return fmt.Errorf("reading stdin: %w", err)
	}
	if err := cl.Flush(ctx); err != nil {
		return fmt.Errorf("producing to %s: interrupted with records unacknowledged", c.Topic)
	}
	mu.Lock()
	defer mu.Unlock()
	if firstErr != nil {
		return kafkaErr(fmt.Sprintf("producing to %s: %d of %d records failed", c.Topic, failed, sent), firstErr, "")
	}
	fmt.Fprintf(os.Stderr, "produced %d records to %s\n", sent, c.Topic)
	return nil
}

// reachable asks the cluster for its brokers (and no topics) so that a
// cluster nobody answers for fails the command at once rather than leaving
// the client retrying.
func reachable(ctx context.Context, cl *kgo.Client, brokers string) error {
	ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{}
	if _, err := req.RequestWith(ctx, cl); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("connecting to %s: no answer within %s", brokers, leaderTimeout)
		}
		return err // names the broker and why it cannot be reached
	}
	return nil
}

// connectClient creates a client for brokers, checks that one answers, and
// returns it with a context that ends on SIGINT or SIGTERM; done closes
// both.
func connectClient(brokers string, opts []kgo.Opt) (context.Context, *kgo.Client, func(), error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("connecting to %s: %w", brokers, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	done := func() {
		stop()
		cl.Close()
	}
	if err := reachable(ctx, cl, brokers); err != nil {
		done()
		return nil, nil, nil, err
	}
	return ctx, cl, done, nil
}
