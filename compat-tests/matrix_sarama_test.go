package compattests

// sarama's driver of the compatibility matrix (DRIVERS.md), in-process, at
// Kafka 3.6's protocol versions.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// saramaDriver runs the matrix operations with IBM/sarama: ClusterAdmin for
// metadata, topics and groups, the AsyncProducer, the partition Consumer,
// and the ConsumerGroup with auto commit off and an explicit commit.
type saramaDriver struct{}

// saramaRetryBackoff is the pause between two attempts of a produce.
const saramaRetryBackoff = 100 * time.Millisecond

var saramaCodecs = map[string]sarama.CompressionCodec{
	"none": sarama.CompressionNone, "gzip": sarama.CompressionGZIP, "snappy": sarama.CompressionSnappy,
	"lz4": sarama.CompressionLZ4, "zstd": sarama.CompressionZSTD,
}

func (d saramaDriver) run(ctx context.Context, t testing.TB, op string, a opArgs, line func(json.RawMessage)) error {
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	line = lockedLine(line)
	brokers := strings.Split(a.Bootstrap, ",")
	cfg := d.config(a.Timeout)
	switch op {
	case "metadata", "create", "delete", "groups":
		out, err := saramaBounded(ctx, func() (any, error) { return d.admin(brokers, cfg, op, a) })
		if err != nil {
			return fmt.Errorf("sarama %s: %w", op, err)
		}
		return emit(line, out)
	case "produce":
		return d.produce(ctx, brokers, cfg, a, line)
	case "produce-txn":
		return d.produceTxn(ctx, brokers, cfg, a, line)
	case "consume":
		return d.consume(ctx, brokers, cfg, a, line)
	case "group-consume":
		return d.groupConsume(ctx, brokers, cfg, a, line)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// config is the configuration every operation starts from.
func (saramaDriver) config(timeout time.Duration) *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.ClientID = "pubg1-matrix-sarama"
	cfg.Version = sarama.V3_6_0_0
	cfg.Net.DialTimeout = 10 * time.Second
	cfg.Admin.Timeout = timeout
	cfg.Metadata.Retry.Max = 20
	cfg.Metadata.Retry.Backoff = 250 * time.Millisecond
	// Metadata requests must not bring a topic back that the create and
	// delete cell has just deleted.
	cfg.Metadata.AllowAutoTopicCreation = false
	return cfg
}

// saramaBounded runs f, which sarama gives no context to, and gives up
// when ctx ends; f then finishes on its own, bounded by sarama's network
// timeouts and retries.
func saramaBounded[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := f()
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// admin runs an admin operation and returns its output line.
func (saramaDriver) admin(brokers []string, cfg *sarama.Config, op string, a opArgs) (_ any, err error) {
	adm, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating the cluster admin: %w", err)
	}
	defer func() {
		if cerr := adm.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing the cluster admin: %w", cerr)
		}
	}()
	switch op {
	case "metadata":
		bs, _, err := adm.DescribeCluster()
		if err != nil {
			return nil, fmt.Errorf("describing the cluster: %w", err)
		}
		tms, err := adm.DescribeTopics([]string{a.Topic})
		if err != nil {
			return nil, fmt.Errorf("describing %s: %w", a.Topic, err)
		}
		if len(tms) != 1 || tms[0].Name != a.Topic {
			return nil, fmt.Errorf("describing %s returned %d topics", a.Topic, len(tms))
		}
		if tms[0].Err != sarama.ErrNoError {
			return nil, fmt.Errorf("describing %s: %w", a.Topic, tms[0].Err)
		}
		out := metadataLine{Topic: a.Topic}
		for _, b := range bs {
			host, port, err := net.SplitHostPort(b.Addr())
			if err != nil {
				return nil, fmt.Errorf("broker %d: %w", b.ID(), err)
			}
			p, err := strconv.ParseInt(port, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("broker %d: %w", b.ID(), err)
			}
			out.addBroker(b.ID(), host, int32(p))
		}
		for _, p := range tms[0].Partitions {
			out.addPartition(p.ID, p.Leader)
		}
		out.sortPartitions()
		return out, nil
	case "create":
		detail := &sarama.TopicDetail{NumPartitions: a.Partitions, ReplicationFactor: a.RF}
		if err := adm.CreateTopic(a.Topic, detail, false); err != nil {
			return nil, fmt.Errorf("creating %s: %w", a.Topic, err)
		}
		return map[string]string{"created": a.Topic}, nil
	case "delete":
		if err := adm.DeleteTopic(a.Topic); err != nil {
			return nil, fmt.Errorf("deleting %s: %w", a.Topic, err)
		}
		return map[string]string{"deleted": a.Topic}, nil
	case "groups":
		listed, err := adm.ListConsumerGroups()
		if err != nil {
			return nil, fmt.Errorf("listing groups: %w", err)
		}
		ds, err := adm.DescribeConsumerGroups([]string{a.Group})
		if err != nil {
			return nil, fmt.Errorf("describing %s: %w", a.Group, err)
		}
		if len(ds) != 1 || ds[0].GroupId != a.Group {
			return nil, fmt.Errorf("describing %s returned %d groups", a.Group, len(ds))
		}
		d := ds[0]
		if d.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("describing %s: %w", a.Group, d.Err)
		}
		out := groupsLine{Listed: slices.Sorted(maps.Keys(listed)), Group: d.GroupId, State: d.State, ProtocolType: d.ProtocolType}
		for _, id := range slices.Sorted(maps.Keys(d.Members)) {
			m := d.Members[id]
			out.addMember(id, m.ClientId, m.ClientHost)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

// produce sends the records through the AsyncProducer, paced by
// a.DelayMs, and prints each acknowledgement as it comes back.
func (saramaDriver) produce(ctx context.Context, brokers []string, cfg *sarama.Config, a opArgs, line func(json.RawMessage)) error {
	codec, ok := saramaCodecs[a.Compression]
	if !ok {
		return fmt.Errorf("unknown compression %q", a.Compression)
	}
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.RequiredAcks = sarama.RequiredAcks(a.Acks)
	cfg.Producer.Compression = codec
	if a.Idempotent {
		cfg.Producer.Idempotent = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Net.MaxOpenRequests = 1 // sarama's condition for idempotence
	}
	// sarama has no delivery timeout, and computes nothing from a record's
	// timestamp: a failed send is retried Retry.Max times, Retry.Backoff
	// apart, which lasts as long as the operation may.
	cfg.Producer.Retry.Backoff = saramaRetryBackoff
	cfg.Producer.Retry.Max = int(a.Timeout / saramaRetryBackoff)
	p, err := saramaBounded(ctx, func() (sarama.AsyncProducer, error) { return sarama.NewAsyncProducer(brokers, cfg) })
	if err != nil {
		return fmt.Errorf("sarama producer: %w", err)
	}
	acked, failed := 0, 0
	var first error
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		for acked+failed < a.Count {
			select {
			case m := <-p.Successes():
				acked++
				o := m.Offset
				if a.Acks == 0 {
					o = -1
				}
				if err := emit(line, ackLine{I: m.Metadata.(int), O: o}); err != nil && first == nil {
					first = err
				}
			case pe := <-p.Errors():
				failed++
				if first == nil {
					first = fmt.Errorf("record %d: %w", pe.Msg.Metadata.(int), pe.Err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		// Close flushes, drains the producer's channels and waits; bounded.
		_, _ = saramaBounded(ctx, func() (struct{}, error) { return struct{}{}, p.Close() })
	}()
send:
	for i := range a.Count {
		s := shaped(a.Prefix, i, a.TimestampBase)
		m := &sarama.ProducerMessage{Topic: a.Topic, Partition: a.Partition, Key: sarama.StringEncoder(*s.K),
			Value: sarama.StringEncoder(*s.V), Metadata: i}
		if a.TimestampBase != 0 {
			m.Timestamp = time.UnixMilli(s.Ts)
		}
		for _, h := range s.H {
			m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h[0]), Value: []byte(h[1])})
		}
		select {
		case p.Input() <- m:
		case <-ctx.Done():
			break send
		}
		if a.DelayMs > 0 {
			select {
			case <-time.After(time.Duration(a.DelayMs) * time.Millisecond):
			case <-ctx.Done():
				break send
			}
		}
	}
	<-settled
	if first != nil {
		return fmt.Errorf("sarama produce: %d of %d records acknowledged, first failure: %w", acked, a.Count, first)
	}
	if acked < a.Count {
		return fmt.Errorf("sarama produce: %d of %d records acknowledged: %w", acked, a.Count, ctx.Err())
	}
	return nil
}

// produceTxn runs one transaction per entry of a.Commit with a
// transactional SyncProducer: record i of transaction j goes to partition
// i mod a.Partitions, SendMessages waits for their acknowledgements, and
// the transaction then commits or aborts.
func (saramaDriver) produceTxn(ctx context.Context, brokers []string, cfg *sarama.Config, a opArgs, line func(json.RawMessage)) error {
	cfg.Producer.Transaction.ID = a.TxnID
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Net.MaxOpenRequests = 1 // sarama's condition for idempotence
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Retry.Backoff = saramaRetryBackoff
	p, err := saramaBounded(ctx, func() (sarama.SyncProducer, error) { return sarama.NewSyncProducer(brokers, cfg) })
	if err != nil {
		return fmt.Errorf("sarama transactional producer: %w", err)
	}
	defer func() { _, _ = saramaBounded(ctx, func() (struct{}, error) { return struct{}{}, p.Close() }) }()
	for j, commit := range a.Commit {
		_, err := saramaBounded(ctx, func() (struct{}, error) {
			if err := p.BeginTxn(); err != nil {
				return struct{}{}, fmt.Errorf("begin: %w", err)
			}
			msgs := make([]*sarama.ProducerMessage, 0, a.Count)
			for i := range a.Count {
				s := shaped(txnPrefix(a.Prefix, j), i, 0)
				m := &sarama.ProducerMessage{Topic: a.Topic, Partition: int32(i) % a.Partitions,
					Key: sarama.StringEncoder(*s.K), Value: sarama.StringEncoder(*s.V)}
				for _, h := range s.H {
					m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte(h[0]), Value: []byte(h[1])})
				}
				msgs = append(msgs, m)
			}
			if err := p.SendMessages(msgs); err != nil {
				return struct{}{}, fmt.Errorf("produce: %w", err)
			}
			end := p.AbortTxn
			if commit {
				end = p.CommitTxn
			}
			if err := end(); err != nil {
				return struct{}{}, fmt.Errorf("%s: %w", txnEndName(commit), err)
			}
			return struct{}{}, nil
		})
		if err != nil {
			return fmt.Errorf("sarama transaction %d: %w", j, err)
		}
		if err := emit(line, txnEndLine{Txn: j, End: txnEndName(commit)}); err != nil {
			return err
		}
	}
	return nil
}

func saramaRecordLine(m *sarama.ConsumerMessage) recordLine {
	l := newRecordLine(m.Partition, m.Offset, m.Key, m.Value, m.Timestamp.UnixMilli())
	for _, h := range m.Headers {
		l.H = append(l.H, [2]string{string(h.Key), string(h.Value)})
	}
	return l
}

// consume reads a.Count records of one partition with the partition
// Consumer; a timestamp is resolved with the client's GetOffset
// (ListOffsets).
func (saramaDriver) consume(ctx context.Context, brokers []string, cfg *sarama.Config, a opArgs, line func(json.RawMessage)) error {
	kind, n, err := parseFrom(a.From)
	if err != nil {
		return fmt.Errorf("--from %q: %w", a.From, err)
	}
	cfg.Consumer.Return.Errors = true
	cfg.Consumer.MaxWaitTime = 250 * time.Millisecond
	if a.ReadCommitted {
		cfg.Consumer.IsolationLevel = sarama.ReadCommitted
	}
	client, err := saramaBounded(ctx, func() (sarama.Client, error) { return sarama.NewClient(brokers, cfg) })
	if err != nil {
		return fmt.Errorf("sarama client: %w", err)
	}
	defer client.Close()
	var offset int64
	switch kind {
	case "earliest":
		offset = sarama.OffsetOldest
	case "latest":
		offset = sarama.OffsetNewest
	case "ts":
		offset, err = saramaBounded(ctx, func() (int64, error) { return client.GetOffset(a.Topic, a.Partition, n) })
		if err != nil {
			return fmt.Errorf("offset of timestamp %d: %w", n, err)
		}
		if offset < 0 {
			offset = sarama.OffsetNewest // no record at or after it yet
		}
	default:
		offset = n
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("sarama consumer: %w", err)
	}
	defer consumer.Close()
	pc, err := saramaBounded(ctx, func() (sarama.PartitionConsumer, error) {
		return consumer.ConsumePartition(a.Topic, a.Partition, offset)
	})
	if err != nil {
		return fmt.Errorf("consuming %s/%d from %d: %w", a.Topic, a.Partition, offset, err)
	}
	defer pc.AsyncClose()
	for got := 0; got < a.Count; got++ {
		select {
		case m := <-pc.Messages():
			if err := emit(line, saramaRecordLine(m)); err != nil {
				return err
			}
		case e := <-pc.Errors():
			return fmt.Errorf("after %d of %d records: %w", got, a.Count, e)
		case <-ctx.Done():
			return fmt.Errorf("%d of %d records: %w", got, a.Count, ctx.Err())
		}
	}
	return nil
}

// saramaClaimed is a record a group session handed over.
type saramaClaimed struct {
	sess sarama.ConsumerGroupSession
	msg  *sarama.ConsumerMessage
}

// saramaMatrixHandler passes every claimed record to out and commits what
// was marked when a session ends.
type saramaMatrixHandler struct {
	out chan<- saramaClaimed
}

func (saramaMatrixHandler) Setup(sarama.ConsumerGroupSession) error { return nil }

// Cleanup commits what was marked, should a rebalance end the session
// before the operation commits.
func (saramaMatrixHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	sess.Commit()
	return nil
}

func (h saramaMatrixHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			select {
			case h.out <- saramaClaimed{sess, m}:
			case <-sess.Context().Done():
				return nil
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}

// groupConsume joins the group with auto commit off, prints a.Count
// records, marks each, commits synchronously and closes the group
// consumer, which leaves the group.
func (saramaDriver) groupConsume(ctx context.Context, brokers []string, cfg *sarama.Config, a opArgs, line func(json.RawMessage)) error {
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Return.Errors = true // Close returns them, commit failures too
	cfg.Consumer.MaxWaitTime = 250 * time.Millisecond
	cg, err := saramaBounded(ctx, func() (sarama.ConsumerGroup, error) { return sarama.NewConsumerGroup(brokers, a.Group, cfg) })
	if err != nil {
		return fmt.Errorf("sarama consumer group: %w", err)
	}
	claimed := make(chan saramaClaimed)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	ended := make(chan error, 1)
	go func() {
		for cctx.Err() == nil {
			if err := cg.Consume(cctx, []string{a.Topic}, saramaMatrixHandler{claimed}); err != nil {
				ended <- err
				return
			}
		}
		ended <- nil
	}()
	closeGroup := func() error {
		stop()
		_, err := saramaBounded(ctx, func() (struct{}, error) {
			<-ended
			return struct{}{}, cg.Close()
		})
		return err
	}
	var sess sarama.ConsumerGroupSession
	for got := 0; got < a.Count; got++ {
		select {
		case c := <-claimed:
			if err := emit(line, saramaRecordLine(c.msg)); err != nil {
				_ = closeGroup()
				return err
			}
			c.sess.MarkMessage(c.msg, "")
			sess = c.sess
		case err := <-ended:
			ended <- err // for closeGroup
			_ = closeGroup()
			return fmt.Errorf("sarama group consume after %d of %d records: %w", got, a.Count, err)
		case <-ctx.Done():
			_ = closeGroup()
			return fmt.Errorf("sarama group consume: %d of %d records: %w", got, a.Count, ctx.Err())
		}
	}
	if sess != nil {
		sess.Commit()
	}
	if err := closeGroup(); err != nil {
		return fmt.Errorf("sarama group consume: closing (which reports the group's errors, of the commit too): %w", err)
	}
	return nil
}
