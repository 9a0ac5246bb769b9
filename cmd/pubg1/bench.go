package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pubg1/pubg1/bench"
)

type benchCmd struct {
	Brokers    string        `default:"127.0.0.1:9092" env:"PUBG1_BENCH_BROKERS" help:"Comma-separated bootstrap brokers of any Kafka-compatible cluster."`
	Topic      string        `default:"pubg1-bench" help:"Topic to use (created if missing)."`
	Partitions int32         `default:"8" help:"Partitions of the topic when it is created."`
	Records    int           `default:"1000000" help:"Records to produce."`
	Size       int           `default:"100" help:"Record value size in bytes."`
	Acks       int16         `default:"-1" help:"Produce acks: -1 (all), 1 or 0."`
	Buffered   int           `name:"max-buffered" default:"100000" help:"Records the producer may have in flight (franz-go MaxBufferedRecords)."`
	Rate       int           `help:"Produce at this many records per second (0: as fast as possible); compare ack latency of two systems at one rate."`
	Linger     time.Duration `default:"-1ns" help:"Producer linger, how long a batch waits to fill before it is sent (negative: franz-go's default, 10ms)."`
	Produce    bool          `default:"true" negatable:"" help:"Produce the records and measure produce throughput and ack latency."`
	Consume    bool          `default:"true" negatable:"" help:"Consume the records back and measure fetch throughput."`
	Timeout    time.Duration `default:"5m" help:"Upper bound for each phase."`
}

func (c *benchCmd) Run() error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cfg := bench.DefaultConfig()
	cfg.Brokers = strings.Split(c.Brokers, ",")
	cfg.Topic, cfg.Partitions, cfg.Records, cfg.RecordSize, cfg.Acks, cfg.Timeout = c.Topic, c.Partitions, c.Records, c.Size, c.Acks, c.Timeout
	cfg.MaxBuffered, cfg.Rate, cfg.Linger = c.Buffered, c.Rate, c.Linger
	if err := bench.EnsureTopic(ctx, cfg); err != nil {
		return err
	}
	if c.Produce {
		res, err := bench.Produce(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stdout, "produce: %v\n", res)
	}
	if !c.Consume {
		return nil
	}
	res, err := bench.Consume(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "fetch:   %v\n", res)
	return nil
}
