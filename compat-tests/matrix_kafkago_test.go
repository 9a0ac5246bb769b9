package compattests

// kafka-go's driver of the compatibility matrix (DRIVERS.md), in-process.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/describegroups"
)

// kafkaGoDriver runs the matrix operations with segmentio/kafka-go: Client
// for metadata, topics and groups, the Writer, the partition Reader, and
// the group Reader with explicit, synchronous commits.
type kafkaGoDriver struct{}

// kafkaGoNoReadCommitted is why kafka-go cannot consume at read_committed.
const kafkaGoNoReadCommitted = "kafka-go's Reader sends IsolationLevel ReadCommitted but keeps " +
	"the records of aborted transactions (it ignores the fetch's aborted transactions) and hands " +
	"out transaction markers as messages"

// kafkaGoBackoffMax is the longest pause between two attempts of a write.
const kafkaGoBackoffMax = time.Second

var kafkaGoCodecs = map[string]kafka.Compression{
	"none": 0, "gzip": kafka.Gzip, "snappy": kafka.Snappy, "lz4": kafka.Lz4, "zstd": kafka.Zstd,
}

func (d kafkaGoDriver) run(ctx context.Context, t testing.TB, op string, a opArgs, line func(json.RawMessage)) error {
	ctx, cancel := context.WithTimeout(ctx, a.Timeout)
	defer cancel()
	line = lockedLine(line)
	brokers := strings.Split(a.Bootstrap, ",")
	// A transport of the operation's own: kafka.DefaultTransport is shared
	// and caches metadata from one operation to the next. Its background
	// goroutines end with ctx.
	tr := &kafka.Transport{ClientID: "pubg1-matrix-kafka-go", MetadataTTL: time.Second, Context: ctx}
	defer tr.CloseIdleConnections()
	// The clients' error logs, shown with the test's log.
	var logs syncBuffer
	defer func() {
		if s := logs.String(); s != "" {
			t.Logf("kafka-go %s errors:\n%s", op, tail(s, 8<<10))
		}
	}()
	logger := kafka.LoggerFunc(func(format string, args ...any) { fmt.Fprintf(&logs, format+"\n", args...) })
	switch op {
	case "metadata", "create", "delete", "groups":
		cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: a.Timeout, Transport: tr}
		if err := d.admin(ctx, t, tr, cl, op, a, line); err != nil {
			return fmt.Errorf("kafka-go %s: %w", op, err)
		}
		return nil
	case "produce":
		return d.produce(ctx, t, tr, logger, brokers, a, line)
	case "consume", "group-consume":
		if a.ReadCommitted {
			return fmt.Errorf("kafka-go %s: %w: %s", op, errUnsupported, kafkaGoNoReadCommitted)
		}
		return d.consume(ctx, logger, brokers, op, a, line)
	case "produce-txn":
		return fmt.Errorf("kafka-go produce-txn: %w: kafka-go has no transactional producer", errUnsupported)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// admin runs an admin operation through kafka.Client.
func (kafkaGoDriver) admin(ctx context.Context, t testing.TB, tr *kafka.Transport, cl *kafka.Client, op string, a opArgs, line func(json.RawMessage)) error {
	switch op {
	case "metadata":
		resp, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{a.Topic}})
		if err != nil {
			return err
		}
		i := slices.IndexFunc(resp.Topics, func(t kafka.Topic) bool { return t.Name == a.Topic })
		if i < 0 {
			return fmt.Errorf("the metadata has no topic %s", a.Topic)
		}
		if err := resp.Topics[i].Error; err != nil {
			return fmt.Errorf("topic %s: %w", a.Topic, err)
		}
		out := metadataLine{Topic: a.Topic}
		for _, b := range resp.Brokers {
			out.addBroker(int32(b.ID), b.Host, int32(b.Port))
		}
		for _, p := range resp.Topics[i].Partitions {
			out.addPartition(int32(p.ID), int32(p.Leader.ID))
		}
		out.sortPartitions()
		return emit(line, out)
	case "create":
		resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
			{Topic: a.Topic, NumPartitions: int(a.Partitions), ReplicationFactor: int(a.RF)},
		}})
		if err == nil {
			err = resp.Errors[a.Topic]
		}
		if err != nil {
			return fmt.Errorf("creating %s: %w", a.Topic, err)
		}
		return emit(line, map[string]string{"created": a.Topic})
	case "delete":
		resp, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{a.Topic}})
		if err == nil {
			err = resp.Errors[a.Topic]
		}
		if err != nil {
			return fmt.Errorf("deleting %s: %w", a.Topic, err)
		}
		return emit(line, map[string]string{"deleted": a.Topic})
	case "groups":
		// ListGroups asks one broker, which is the whole cluster in the
		// groups cell.
		listed, err := cl.ListGroups(ctx, &kafka.ListGroupsRequest{})
		if err == nil {
			err = listed.Error
		}
		if err != nil {
			return fmt.Errorf("listing groups: %w", err)
		}
		described, err := cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{a.Group}})
		if err != nil {
			return fmt.Errorf("describing %s: %w", a.Group, err)
		}
		if len(described.Groups) != 1 || described.Groups[0].GroupID != a.Group {
			return fmt.Errorf("describing %s returned %d groups", a.Group, len(described.Groups))
		}
		g := described.Groups[0]
		out := groupsLine{Group: g.GroupID, State: g.GroupState}
		for _, l := range listed.Groups {
			out.Listed = append(out.Listed, l.GroupID)
			// Client.DescribeGroups leaves the protocol type out;
			// ListGroups has it.
			if l.GroupID == a.Group {
				out.ProtocolType = l.ProtocolType
			}
		}
		slices.Sort(out.Listed)
		var kerr kafka.Error
		switch {
		case g.Error == nil:
			for _, m := range g.Members {
				out.addMember(m.MemberID, m.ClientID, m.ClientHost)
			}
		case errors.As(g.Error, &kerr):
			return fmt.Errorf("describing %s: %w", a.Group, g.Error)
		default:
			// Client.DescribeGroups decodes every member's subscription
			// and fails on versions above 1, which newer clients send
			// (franz-go sends version 3): describe the group with
			// kafka-go's protocol-level request instead.
			t.Logf("kafka-go's Client.DescribeGroups failed (%v); describing %s with the protocol-level request", g.Error, a.Group)
			resp, err := tr.RoundTrip(ctx, cl.Addr, &describegroups.Request{Groups: []string{a.Group}})
			if err != nil {
				return fmt.Errorf("describing %s: %w", a.Group, err)
			}
			groups := resp.(*describegroups.Response).Groups
			if len(groups) != 1 || groups[0].GroupID != a.Group {
				return fmt.Errorf("describing %s returned %d groups", a.Group, len(groups))
			}
			pg := groups[0]
			if pg.ErrorCode != 0 {
				return fmt.Errorf("describing %s: %w", a.Group, kafka.Error(pg.ErrorCode))
			}
			out.State, out.ProtocolType = pg.GroupState, pg.ProtocolType
			for _, m := range pg.Members {
				out.addMember(m.MemberID, m.ClientID, m.ClientHost)
			}
		}
		return emit(line, out)
	}
	return fmt.Errorf("unknown operation %q", op)
}

// produce writes the records with an asynchronous Writer, paced by
// a.DelayMs, and prints each acknowledgement its Completion reports.
func (kafkaGoDriver) produce(ctx context.Context, t testing.TB, tr *kafka.Transport, logger kafka.Logger, brokers []string, a opArgs, line func(json.RawMessage)) error {
	if a.Idempotent {
		return fmt.Errorf("kafka-go produce: %w: kafka-go has no idempotent producer", errUnsupported)
	}
	codec, ok := kafkaGoCodecs[a.Compression]
	if !ok {
		return fmt.Errorf("unknown compression %q", a.Compression)
	}
	var (
		mu             sync.Mutex
		acked, settled int
		first          error
		allSettled     = make(chan struct{})
		returned       bool // nothing is printed once produce returns
	)
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        a.Topic,
		Balancer:     kafkaGoByPartition,
		RequiredAcks: kafka.RequiredAcks(a.Acks),
		Compression:  codec,
		BatchTimeout: 5 * time.Millisecond, // the default waits a second for more
		// kafka-go has no delivery timeout, and computes nothing from a
		// record's timestamp: a failed batch is attempted MaxAttempts
		// times, at most kafkaGoBackoffMax apart, which lasts about as long
		// as the operation may.
		MaxAttempts:     max(10, int(a.Timeout/kafkaGoBackoffMax)),
		WriteBackoffMin: 100 * time.Millisecond,
		WriteBackoffMax: kafkaGoBackoffMax,
		WriteTimeout:    10 * time.Second,
		ReadTimeout:     10 * time.Second,
		Async:           true,
		Transport:       tr,
		ErrorLogger:     logger,
		Completion: func(msgs []kafka.Message, err error) {
			mu.Lock()
			defer mu.Unlock()
			if returned {
				return
			}
			for _, m := range msgs {
				i := m.WriterData.(int)
				switch {
				case err != nil:
					if first == nil {
						first = fmt.Errorf("record %d: %w", i, err)
					}
				default:
					acked++
					o := m.Offset
					if a.Acks == 0 {
						o = -1
					}
					if err := emit(line, ackLine{I: i, O: o}); err != nil && first == nil {
						first = err
					}
				}
				if settled++; settled == a.Count {
					close(allSettled)
				}
			}
		},
	}
	msgs := make([]kafka.Message, a.Count)
	for i := range msgs {
		s := shaped(a.Prefix, i, a.TimestampBase)
		m := kafka.Message{Partition: int(a.Partition), Key: []byte(*s.K), Value: []byte(*s.V), WriterData: i}
		if a.TimestampBase != 0 {
			m.Time = time.UnixMilli(s.Ts)
		}
		for _, h := range s.H {
			m.Headers = append(m.Headers, kafka.Header{Key: h[0], Value: []byte(h[1])})
		}
		msgs[i] = m
	}
	// write hands messages to the writer. It fails at once when the
	// metadata does not have the topic (yet), or has another error
	// kafka-go calls temporary; it is retried then, as the writer retries
	// its produce requests.
	retried := false
	write := func(msgs ...kafka.Message) error {
		for {
			err := w.WriteMessages(ctx, msgs...)
			var kerr kafka.Error
			if err == nil || !errors.As(err, &kerr) || !kerr.Temporary() {
				return err
			}
			if !retried {
				t.Logf("kafka-go produce: WriteMessages: %v; retrying", err)
				retried = true
			}
			select {
			case <-time.After(250 * time.Millisecond):
			case <-ctx.Done():
				return err
			}
		}
	}
	var err error
	if a.DelayMs == 0 {
		err = write(msgs...)
	} else {
	paced:
		for i := range msgs {
			if err = write(msgs[i]); err != nil {
				err = fmt.Errorf("record %d: %w", i, err)
				break
			}
			select {
			case <-time.After(time.Duration(a.DelayMs) * time.Millisecond):
			case <-ctx.Done():
				break paced
			}
		}
	}
	if err == nil {
		select {
		case <-allSettled:
		case <-ctx.Done():
		}
	}
	// Close waits for the writes in flight, which retries bound.
	closed := make(chan error, 1)
	go func() { closed <- w.Close() }()
	select {
	case cerr := <-closed:
		if err == nil && cerr != nil {
			err = fmt.Errorf("closing the writer: %w", cerr)
		}
	case <-ctx.Done():
	}
	mu.Lock()
	defer mu.Unlock()
	returned = true
	switch {
	case first != nil:
		return fmt.Errorf("kafka-go produce: %d of %d records acknowledged, first failure: %w", acked, a.Count, first)
	case err != nil:
		return fmt.Errorf("kafka-go produce: %d of %d records acknowledged: %w", acked, a.Count, err)
	case acked < a.Count:
		return fmt.Errorf("kafka-go produce: %d of %d records acknowledged: %w", acked, a.Count, ctx.Err())
	}
	return nil
}

func kafkaGoRecordLine(m kafka.Message) recordLine {
	l := newRecordLine(int32(m.Partition), m.Offset, m.Key, m.Value, m.Time.UnixMilli())
	for _, h := range m.Headers {
		l.H = append(l.H, [2]string{h.Key, string(h.Value)})
	}
	return l
}

// consume reads a.Count records with a Reader: of one partition from
// a.From (SetOffsetAt resolves a timestamp), or, for group-consume, as a
// member of a.Group that commits what it printed with CommitMessages
// (synchronous, as CommitInterval is 0) and leaves the group on Close.
func (kafkaGoDriver) consume(ctx context.Context, logger kafka.Logger, brokers []string, op string, a opArgs, line func(json.RawMessage)) (err error) {
	cfg := kafka.ReaderConfig{
		Brokers:     brokers,
		Topic:       a.Topic,
		MinBytes:    1,
		MaxBytes:    1 << 20,
		MaxWait:     250 * time.Millisecond,
		Dialer:      &kafka.Dialer{ClientID: "pubg1-matrix-kafka-go", Timeout: 10 * time.Second},
		ErrorLogger: logger,
	}
	if op == "group-consume" {
		cfg.GroupID = a.Group
		cfg.StartOffset = kafka.FirstOffset
		cfg.CommitInterval = 0
		cfg.HeartbeatInterval = time.Second
		cfg.SessionTimeout = 10 * time.Second
		cfg.RebalanceTimeout = 10 * time.Second
		cfg.JoinGroupBackoff = 500 * time.Millisecond
	} else {
		cfg.Partition = int(a.Partition)
	}
	r := kafka.NewReader(cfg)
	defer func() {
		// Close leaves the group; bounded.
		closed := make(chan error, 1)
		go func() { closed <- r.Close() }()
		select {
		case cerr := <-closed:
			if cerr != nil && err == nil {
				err = fmt.Errorf("kafka-go %s: closing the reader: %w", op, cerr)
			}
		case <-ctx.Done():
		}
	}()
	if op == "consume" {
		kind, n, err := parseFrom(a.From)
		if err != nil {
			return fmt.Errorf("--from %q: %w", a.From, err)
		}
		switch kind {
		case "earliest":
			err = r.SetOffset(kafka.FirstOffset)
		case "latest":
			err = r.SetOffset(kafka.LastOffset)
		case "ts":
			err = r.SetOffsetAt(ctx, time.UnixMilli(n))
		default:
			err = r.SetOffset(n)
		}
		if err != nil {
			return fmt.Errorf("kafka-go consume: starting at %s: %w", a.From, err)
		}
	}
	got := make([]kafka.Message, 0, a.Count)
	for len(got) < a.Count {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("kafka-go %s: %d of %d records: %w", op, len(got), a.Count, err)
		}
		got = append(got, m)
		if err := emit(line, kafkaGoRecordLine(m)); err != nil {
			return err
		}
	}
	if op == "group-consume" {
		if err := r.CommitMessages(ctx, got...); err != nil {
			return fmt.Errorf("kafka-go group-consume: committing: %w", err)
		}
	}
	return nil
}
