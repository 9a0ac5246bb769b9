package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// defaultCommitTimeout bounds the commit of a group's offsets on exit.
const defaultCommitTimeout = 10 * time.Second

type topicConsumeCmd struct {
	Brokers string `default:"127.0.0.1:9092" env:"PUBG1_BROKERS" help:"Comma-separated bootstrap brokers of any Kafka-compatible cluster."`
	Topic   string `arg:"" help:"Topic to consume."`
	From    string `default:"beginning" placeholder:"beginning|end|OFFSET|@TIMESTAMP_MS" help:"Where to start in every partition; with --group, only where the group has no committed offset."`
	Count   int    `name:"count" short:"n" default:"0" help:"Exit after this many records (0: follow until Ctrl-C)."`
	Group   string `help:"Consume as a member of this group and commit what was printed (default: no group, nothing committed)."`
	Format  string `default:"%v\n" help:"Format of each record: %k key, %v value, %p partition, %o offset, %t timestamp (ms), %h headers (k=v,...), %T topic, %% a percent sign; \\n and \\t escapes."`
	Output  string `short:"o" default:"text" enum:"text,json" help:"text prints --format; json prints one JSON object per record (${enum})."`
	// As kafka-console-consumer's --isolation-level.
	Isolation string `name:"isolation-level" default:"read_uncommitted" enum:"read_uncommitted,read_committed" help:"read_committed skips records of aborted transactions and waits for open ones to end (${enum})."`
}

// consumedRecord is one record as --output json prints it, one object a
// line. Key and value are null when absent.
type consumedRecord struct {
	Topic     string         `json:"topic"`
	Partition int32          `json:"partition"`
	Offset    int64          `json:"offset"`
	Timestamp int64          `json:"timestamp"`
	Key       *string        `json:"key"`
	Value     *string        `json:"value"`
	Headers   []recordHeader `json:"headers"`
}

type recordHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// startOffset reads --from.
func startOffset(from string) (kgo.Offset, error) {
	switch {
	case from == "beginning":
		return kgo.NewOffset().AtStart(), nil
	case from == "end":
		return kgo.NewOffset().AtEnd(), nil
	case strings.HasPrefix(from, "@"):
		ms, err := strconv.ParseInt(from[1:], 10, 64)
		if err != nil || ms < 0 {
			return kgo.Offset{}, fmt.Errorf("--from %s: not @TIMESTAMP_MS", from)
		}
		return kgo.NewOffset().AfterMilli(ms), nil
	}
	n, err := strconv.ParseInt(from, 10, 64)
	if err != nil || n < 0 {
		return kgo.Offset{}, fmt.Errorf("--from %s: want beginning, end, an offset or @TIMESTAMP_MS", from)
	}
	return kgo.NewOffset().At(n), nil
}

// Run prints records until --count is reached or the user interrupts.
func (c *topicConsumeCmd) Run() error {
	if c.Count < 0 {
		return fmt.Errorf("--count %d: must not be negative", c.Count)
	}
	offset, err := startOffset(c.From)
	if err != nil {
		return err
	}
	format := strings.NewReplacer(`\n`, "\n", `\t`, "\t").Replace(c.Format)
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(c.Brokers, ",")...), kgo.ConsumeTopics(c.Topic), kgo.ConsumeResetOffset(offset)}
	if c.Isolation == "read_committed" {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if c.Group != "" {
		opts = append(opts, kgo.ConsumerGroup(c.Group), kgo.AutoCommitMarks())
	}
	ctx, cl, done, err := connectClient(c.Brokers, opts)
	if err != nil {
		return err
	}
	defer done()

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	printed := 0
	for c.Count == 0 || printed < c.Count {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			break
		}
		var fetchErr error
		fetches.EachError(func(topic string, p int32, err error) {
			if fetchErr == nil && !errors.Is(err, context.Canceled) {
				fetchErr = kafkaErr(fmt.Sprintf("consuming %s partition %d", topic, p), err, "")
			}
		})
		if fetchErr != nil {
			return fetchErr
		}
		for _, r := range fetches.Records() {
			if c.Count > 0 && printed == c.Count {
				break
			}
			if c.Output == "json" {
				err = enc.Encode(jsonRecord(r))
			} else {
				_, err = out.WriteString(formatRecord(format, r))
			}
			if err != nil {
				return err
			}
			printed++
			if c.Group != "" {
				cl.MarkCommitRecords(r)
			}
		}
		// A follower of the log sees each record as it arrives.
		if err := out.Flush(); err != nil {
			return err
		}
	}
	if c.Group != "" {
		commitCtx, cancel := context.WithTimeout(context.Background(), defaultCommitTimeout)
		defer cancel()
		if err := cl.CommitMarkedOffsets(commitCtx); err != nil {
			return fmt.Errorf("committing offsets of group %s: %w", c.Group, err)
		}
	}
	return nil
}

func jsonRecord(r *kgo.Record) consumedRecord {
	j := consumedRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UnixMilli(), Headers: []recordHeader{}}
	if r.Key != nil {
		k := string(r.Key)
		j.Key = &k
	}
	if r.Value != nil {
		v := string(r.Value)
		j.Value = &v
	}
	for _, h := range r.Headers {
		j.Headers = append(j.Headers, recordHeader{h.Key, string(h.Value)})
	}
	return j
}

// formatRecord expands format's placeholders for r.
func formatRecord(format string, r *kgo.Record) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch format[i] {
		case 'k':
			b.Write(r.Key)
		case 'v':
			b.Write(r.Value)
		case 'p':
			b.WriteString(strconv.Itoa(int(r.Partition)))
		case 'o':
			b.WriteString(strconv.FormatInt(r.Offset, 10))
		case 't':
			b.WriteString(strconv.FormatInt(r.Timestamp.UnixMilli(), 10))
		case 'T':
			b.WriteString(r.Topic)
		case 'h':
			for j, h := range r.Headers {
				if j > 0 {
					b.WriteByte(',')
				}
				b.WriteString(h.Key + "=" + string(h.Value))
			}
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(format[i])
		}
	}
	return b.String()
}
