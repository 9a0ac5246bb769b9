package compattests

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kadm"
)

// segmentio/kafka-go through the features it has: topic admin on the
// controller connection, the Writer with every acks level and codec, the
// partition Reader from the first offset, a timestamp and the latest offset,
// and the group Reader with explicit commits.

// kafkaGoWait bounds each wait of the kafka-go tests.
const kafkaGoWait = 60 * time.Second

// kafkaGoController dials the controller the way kafka-go's docs say topics
// are administered: any broker, then Controller(), then that broker.
func kafkaGoController(ctx context.Context, t testing.TB, b *brokerProc) *kafka.Conn {
	t.Helper()
	conn, err := kafka.DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		t.Fatalf("dialing %s: %v", b.Addr(), err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		t.Fatalf("finding the controller: %v", err)
	}
	addr := net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port))
	if addr != b.Addr() {
		t.Fatalf("controller is %s, want the only broker %s", addr, b.Addr())
	}
	cc, err := kafka.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dialing the controller %s: %v", addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = cc.SetDeadline(dl)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func kafkaGoCreateTopic(ctx context.Context, t testing.TB, b *brokerProc, topic string, partitions int) {
	t.Helper()
	cc := kafkaGoController(ctx, t, b)
	if err := cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
}

// kafkaGoPartitions lists the partitions kafka-go's metadata shows for topic.
func kafkaGoPartitions(ctx context.Context, b *brokerProc, topic string) ([]kafka.Partition, error) {
	conn, err := kafka.DialContext(ctx, "tcp", b.Addr())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return conn.ReadPartitions(topic)
}

func TestKafkaGoTopicAdmin(t *testing.T) {
	// kafka-go's ReadPartitions sends Metadata allowing auto-creation, which
	// would bring the deleted topic back, as it would on Kafka.
	b := startBroker(t, "--no-auto-create-topics")
	ctx := testContext(t, kafkaGoWait)
	const topic = "kafkago-admin"
	cc := kafkaGoController(ctx, t, b)
	if err := cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}); err != nil {
		t.Fatalf("creating topic %s: %v", topic, err)
	}
	parts, err := kafkaGoPartitions(ctx, b, topic)
	if err != nil {
		t.Fatalf("reading partitions of %s: %v", topic, err)
	}
	var ids []int
	for _, p := range parts {
		if p.Topic != topic || p.Leader.Host != "127.0.0.1" || p.Leader.Port != int(port(t, b.Addr())) || p.Error != nil {
			t.Errorf("partition %+v", p)
		}
		ids = append(ids, p.ID)
	}
	sort.Ints(ids)
	if !slices.Equal(ids, []int{0, 1, 2}) {
		t.Fatalf("topic %s has partitions %v, want [0 1 2]", topic, ids)
	}
	// kafka-go's CreateTopics is idempotent: it drops TopicAlreadyExists.
	// The existing topic must stay as it was.
	if err := cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: 5, ReplicationFactor: 1}); err != nil {
		t.Errorf("creating %s again: %v, want nil (TopicAlreadyExists dropped)", topic, err)
	}
	if parts, err := kafkaGoPartitions(ctx, b, topic); err != nil || len(parts) != 3 {
		t.Errorf("after creating %s again: %d partitions (%v), want 3", topic, len(parts), err)
	}

	if err := cc.DeleteTopics(topic); err != nil {
		t.Fatalf("deleting topic %s: %v", topic, err)
	}
	var last error
	if !ktest.Until(ctx, pollEvery, func() bool {
		_, last = kafkaGoPartitions(ctx, b, topic)
		return errors.Is(last, kafka.UnknownTopicOrPartition)
	}) {
		t.Fatalf("topic %s still listed after DeleteTopics: last %v", topic, last)
	}
}

// kafkaGoMessage converts a produced record to kafka-go's form; the
// partition is what kafkaGoByPartition picks.
func kafkaGoMessage(r *testRecord) kafka.Message {
	m := kafka.Message{Partition: int(r.Partition), Key: r.Key, Value: r.Value, Time: r.Timestamp}
	for _, h := range r.Headers {
		m.Headers = append(m.Headers, kafka.Header{Key: h.Key, Value: h.Value})
	}
	return m
}

func fromKafkaGo(m kafka.Message) gotRecord {
	g := gotRecord{Partition: int32(m.Partition), Offset: m.Offset, Key: m.Key, Value: m.Value, Timestamp: m.Time}
	for _, h := range m.Headers {
		g.Headers = append(g.Headers, header{Key: h.Key, Value: h.Value})
	}
	return g
}

// kafkaGoByPartition sends each message to the partition it names.
var kafkaGoByPartition = kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int { return m.Partition })

// kafkaGoWrite writes recs with one synchronous WriteMessages and returns the
// offsets the writer's Completion reported, by key (none with acks=0).
func kafkaGoWrite(ctx context.Context, t testing.TB, b *brokerProc, topic string, acks kafka.RequiredAcks, codec kafka.Compression, recs []testRecord) map[string]int64 {
	t.Helper()
	var mu sync.Mutex
	offsets := make(map[string]int64)
	w := &kafka.Writer{
		Addr:         kafka.TCP(b.Addr()),
		Topic:        topic,
		Balancer:     kafkaGoByPartition,
		RequiredAcks: acks,
		Compression:  codec,
		BatchSize:    16, // several batches per write
		BatchTimeout: 10 * time.Millisecond,
		WriteTimeout: kafkaGoWait,
		Completion: func(msgs []kafka.Message, err error) {
			mu.Lock()
			defer mu.Unlock()
			for _, m := range msgs {
				if err == nil {
					offsets[string(m.Key)] = m.Offset
				}
			}
		},
	}
	msgs := make([]kafka.Message, len(recs))
	for i := range recs {
		msgs[i] = kafkaGoMessage(&recs[i])
	}
	err := w.WriteMessages(ctx, msgs...)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("writing %d messages to %s with acks %v and %v: %v", len(recs), topic, acks, codec, err)
	}
	mu.Lock()
	defer mu.Unlock()
	return offsets
}

// kafkaGoPartitionReader returns a Reader of one partition, without a group,
// closed when the test ends.
func kafkaGoPartitionReader(t testing.TB, b *brokerProc, topic string, partition int) *kafka.Reader {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:   []string{b.Addr()},
		Topic:     topic,
		Partition: partition,
		MinBytes:  1,
		MaxBytes:  1 << 20,
		MaxWait:   200 * time.Millisecond,
	})
	t.Cleanup(func() { r.Close() })
	return r
}

// kafkaGoRead reads n messages from r.
func kafkaGoRead(ctx context.Context, t testing.TB, r *kafka.Reader, n int) []gotRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, kafkaGoWait)
	defer cancel()
	got := make([]gotRecord, 0, n)
	for len(got) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading %s/%d: got %d of %d messages, then %v", r.Config().Topic, r.Config().Partition, len(got), n, err)
		}
		got = append(got, fromKafkaGo(m))
	}
	return got
}

// kafkaGoReadNothing checks that r has no further message within wait.
func kafkaGoReadNothing(ctx context.Context, t testing.TB, r *kafka.Reader, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if m, err := r.ReadMessage(ctx); err == nil {
		t.Errorf("read an unexpected message at %s/%d offset %d: %q", m.Topic, m.Partition, m.Offset, m.Value)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("reading past the end: %v", err)
	}
}

// TestKafkaGoRoundTrip writes with every acks level and codec, one
// combination per partition, and reads each partition back from its first
// offset.
func TestKafkaGoRoundTrip(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 3*time.Minute)
	acks := []kafka.RequiredAcks{kafka.RequireAll, kafka.RequireOne, kafka.RequireNone}
	codecs := []kafka.Compression{kafka.Gzip, kafka.Snappy, kafka.Lz4, kafka.Zstd}
	const topic, perPartition = "kafkago-roundtrip", 40
	kafkaGoCreateTopic(ctx, t, b, topic, len(acks)*len(codecs))
	base := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())
	p := 0
	for _, a := range acks {
		for _, c := range codecs {
			part := p
			p++
			t.Run(fmt.Sprintf("acks=%v/%v", a, c), func(t *testing.T) {
				recs := makeRecords(uint64(part), perPartition, 1, base.Add(time.Duration(part)*time.Second))
				for i := range recs {
					recs[i].Partition = int32(part)
				}
				offsets := kafkaGoWrite(ctx, t, b, topic, a, c, recs)
				for i := range recs {
					o, ok := offsets[string(recs[i].Key)]
					switch {
					case a == kafka.RequireNone:
						// No answer, so no offset: one synchronous writer to one
						// partition appends in order.
						o = int64(i)
					case !ok:
						t.Fatalf("the writer reported no offset for record %d", i)
					}
					recs[i].Offset = o
				}
				r := kafkaGoPartitionReader(t, b, topic, part)
				if err := r.SetOffset(kafka.FirstOffset); err != nil {
					t.Fatal(err)
				}
				got := kafkaGoRead(ctx, t, r, len(recs))
				checkRoundTrip(t, recs, got)
				for i, g := range got {
					if g.Offset != int64(i) {
						t.Fatalf("message %d read at offset %d: the reader went out of order", i, g.Offset)
					}
				}
				kafkaGoReadNothing(ctx, t, r, 500*time.Millisecond)
				for i, got := range storedCodecs(t, b, topic, int32(part)) {
					if got != kafkaGoCodecIDs[c] {
						t.Fatalf("stored batch %d has codec %d, want %d (%v)", i, got, kafkaGoCodecIDs[c], c)
					}
				}
			})
		}
	}
}

// kafkaGoCodecIDs are the codec numbers of a record batch's attributes.
var kafkaGoCodecIDs = map[kafka.Compression]int16{kafka.Gzip: 1, kafka.Snappy: 2, kafka.Lz4: 3, kafka.Zstd: 4}

// storedCodecs returns the codec of each stored record batch of a
// partition, to show the writer really compressed and the broker kept the
// batches as written.
func storedCodecs(t testing.TB, b *brokerProc, topic string, partition int32) []int16 {
	t.Helper()
	var codecs []int16
	for _, batch := range storedBatches(t, b, topic, partition) {
		codecs = append(codecs, batch.Attributes&7)
	}
	return codecs
}

// TestKafkaGoOffsets reads from a timestamp (SetOffsetAt) and from the latest
// offset (LastOffset).
func TestKafkaGoOffsets(t *testing.T) {
	b := startBroker(t)
	ctx := testContext(t, 2*time.Minute)
	const topic = "kafkago-offsets"
	kafkaGoCreateTopic(ctx, t, b, topic, 1)
	base := time.UnixMilli(time.Now().Add(-2 * time.Hour).UnixMilli())
	early := makeRecords(1, 10, 1, base)
	late := makeRecords(2, 10, 1, base.Add(time.Hour))
	kafkaGoWrite(ctx, t, b, topic, kafka.RequireAll, kafka.Snappy, early)
	kafkaGoWrite(ctx, t, b, topic, kafka.RequireAll, kafka.Snappy, late)
	for i := range early {
		early[i].Offset, late[i].Offset = int64(i), int64(len(early)+i)
	}
	all := append(slices.Clone(early), late...)

	for _, tc := range []struct {
		name string
		at   time.Time
		from int
	}{
		{"first late timestamp", late[0].Timestamp, 10},
		{"between the two writes", base.Add(30 * time.Minute), 10},
		{"inside the early write", early[3].Timestamp, 3},
		{"before everything", base.Add(-time.Minute), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := kafkaGoPartitionReader(t, b, topic, 0)
			if err := r.SetOffsetAt(ctx, tc.at); err != nil {
				t.Fatalf("SetOffsetAt(%v): %v", tc.at, err)
			}
			got := kafkaGoRead(ctx, t, r, len(all)-tc.from)
			if got[0].Offset != int64(tc.from) {
				t.Fatalf("SetOffsetAt(%v) began at offset %d, want %d", tc.at, got[0].Offset, tc.from)
			}
			for i, g := range got {
				if d := diffRecord(&all[tc.from+i], g); d != "" || g.Offset != all[tc.from+i].Offset {
					t.Fatalf("message %d at offset %d: %s", i, g.Offset, d)
				}
			}
			kafkaGoReadNothing(ctx, t, r, 300*time.Millisecond)
		})
	}

	t.Run("latest", func(t *testing.T) {
		r := kafkaGoPartitionReader(t, b, topic, 0)
		if err := r.SetOffset(kafka.LastOffset); err != nil {
			t.Fatal(err)
		}
		// The reader resolves LastOffset once it starts; wait until it has
		// (its offset gauge shows the position it fetches from) before
		// writing, so that the new records are after its start.
		type result struct {
			recs []gotRecord
			err  error
		}
		done := make(chan result, 1)
		rctx, cancel := context.WithTimeout(ctx, kafkaGoWait)
		defer cancel()
		go func() {
			var res result
			for len(res.recs) < 5 && res.err == nil {
				var m kafka.Message
				if m, res.err = r.ReadMessage(rctx); res.err == nil {
					res.recs = append(res.recs, fromKafkaGo(m))
				}
			}
			done <- res
		}()
		end := int64(len(all))
		if !ktest.Until(ctx, pollEvery, func() bool { return r.Stats().Offset == end }) {
			t.Fatalf("the reader never began fetching at the end offset %d (at %d)", end, r.Stats().Offset)
		}
		newer := makeRecords(3, 5, 1, base.Add(2*time.Hour))
		kafkaGoWrite(ctx, t, b, topic, kafka.RequireAll, kafka.Zstd, newer)
		for i := range newer {
			newer[i].Offset = end + int64(i)
		}
		res := <-done
		if res.err != nil {
			t.Fatalf("reading from the latest offset: got %d messages, then %v", len(res.recs), res.err)
		}
		for i, g := range res.recs {
			if d := diffRecord(&newer[i], g); d != "" || g.Offset != newer[i].Offset {
				t.Fatalf("message %d at offset %d (want %d): %s", i, g.Offset, newer[i].Offset, d)
			}
		}
		kafkaGoReadNothing(ctx, t, r, 300*time.Millisecond)
	})
}

// kafkaGoConsumed is one message a group reader fetched.
type kafkaGoConsumed struct {
	reader    string
	partition int32
	offset    int64
	value     string
}

// kafkaGoMember is a group Reader fetching in a goroutine; it commits every
// message whose value does not begin with "hold" right after passing it on.
type kafkaGoMember struct {
	name    string
	r       *kafka.Reader
	cancel  context.CancelFunc
	done    chan struct{}
	stopped sync.Once

	mu   sync.Mutex
	errs []error
}

func startKafkaGoMember(t testing.TB, ctx context.Context, b *brokerProc, group, topic, name string, out chan<- kafkaGoConsumed) *kafkaGoMember {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{b.Addr()},
		GroupID:           group,
		Topic:             topic,
		Dialer:            &kafka.Dialer{ClientID: name, Timeout: 10 * time.Second},
		MinBytes:          1,
		MaxBytes:          1 << 20,
		MaxWait:           200 * time.Millisecond,
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  200 * time.Millisecond,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    0, // CommitMessages commits before it returns
	})
	fctx, cancel := context.WithCancel(ctx)
	m := &kafkaGoMember{name: name, r: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			msg, err := r.FetchMessage(fctx)
			if fctx.Err() != nil {
				return
			}
			if err != nil {
				m.fail(err)
				continue
			}
			select {
			case out <- kafkaGoConsumed{reader: name, partition: int32(msg.Partition), offset: msg.Offset, value: string(msg.Value)}:
			case <-fctx.Done():
				return
			}
			if !strings.HasPrefix(string(msg.Value), "hold") {
				if err := r.CommitMessages(fctx, msg); err != nil && fctx.Err() == nil {
					m.fail(fmt.Errorf("committing %d/%d: %w", msg.Partition, msg.Offset, err))
				}
			}
		}
	}()
	t.Cleanup(func() { m.stop(t) })
	return m
}

func (m *kafkaGoMember) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) < 10 {
		m.errs = append(m.errs, err)
	}
}

// stop ends the fetch loop and closes the reader, which leaves the group.
func (m *kafkaGoMember) stop(t testing.TB) {
	t.Helper()
	m.stopped.Do(func() { m.close(t) })
}

func (m *kafkaGoMember) close(t testing.TB) {
	t.Helper()
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(groupStopWait):
		t.Errorf("%s still fetching %v after it was stopped", m.name, groupStopWait)
	}
	closed := make(chan error, 1)
	go func() { closed <- m.r.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("closing %s: %v", m.name, err)
		}
	case <-time.After(groupStopWait):
		t.Errorf("closing %s took over %v", m.name, groupStopWait)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.errs) > 0 {
		t.Errorf("%s failed while consuming: %v", m.name, m.errs)
		m.errs = nil
	}
}

// waitKafkaGoGroup polls DescribeGroups until group is stable with exactly
// the named clients, which share all partitions of topic with none owned
// twice; it returns the owner's client ID of each partition.
func waitKafkaGoGroup(ctx context.Context, t testing.TB, adm *kadm.Client, group, topic string, partitions int32, clients ...string) map[int32]string {
	t.Helper()
	var last string
	var owner map[int32]string
	if !ktest.Until(ctx, pollEvery, func() bool {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			last = err.Error()
			return false
		}
		d := described[group]
		owner = make(map[int32]string)
		var members []string
		for _, m := range d.Members {
			members = append(members, m.ClientID)
			a, ok := m.Assigned.AsConsumer()
			if !ok {
				continue
			}
			for _, at := range a.Topics {
				for _, p := range at.Partitions {
					if prev, dup := owner[p]; dup && at.Topic == topic && d.State == "Stable" {
						t.Fatalf("partition %d is assigned to both %s and %s", p, prev, m.ClientID)
					}
					if at.Topic == topic {
						owner[p] = m.ClientID
					}
				}
			}
		}
		sort.Strings(members)
		last = fmt.Sprintf("state %s, members %v, owners %v, err %v", d.State, members, owner, d.Err)
		return d.Err == nil && d.State == "Stable" && slices.Equal(members, clients) && len(owner) == int(partitions)
	}) {
		t.Fatalf("group %s never was stable with %v sharing %s: last %s", group, clients, topic, last)
	}
	return owner
}

// kafkaGoProduceGroup writes n messages to every partition, the last hold of
// them with values beginning "hold", and returns the new end offsets.
func kafkaGoProduceGroup(ctx context.Context, t testing.TB, b *brokerProc, topic string, partitions int32, from map[int32]int64, n, hold int) map[int32]int64 {
	t.Helper()
	var recs []testRecord
	ends := make(map[int32]int64)
	for p := range partitions {
		for i := range n {
			v := fmt.Sprintf("%d-%d", p, from[p]+int64(i))
			if i >= n-hold {
				v = "hold-" + v
			}
			recs = append(recs, testRecord{Partition: p, Key: []byte(v), Value: []byte(v), Timestamp: time.Now()})
		}
		ends[p] = from[p] + int64(n)
	}
	kafkaGoWrite(ctx, t, b, topic, kafka.RequireAll, kafka.Lz4, recs)
	return ends
}

// collectKafkaGo reads out until every offset in [from, to) of every
// partition arrived, and fails on any message outside that range, any
// repeat, and any message read by a client other than the partition's owner.
func collectKafkaGo(ctx context.Context, t testing.TB, out <-chan kafkaGoConsumed, from, to map[int32]int64, owner map[int32]string, what string) {
	t.Helper()
	seen := make(map[int32]map[int64]bool)
	want := 0
	for p := range from {
		seen[p] = make(map[int64]bool)
		want += int(to[p] - from[p])
	}
	timeout := time.NewTimer(kafkaGoWait)
	defer timeout.Stop()
	for got := 0; got < want; got++ {
		var c kafkaGoConsumed
		select {
		case c = <-out:
		case <-timeout.C:
			t.Fatalf("%s: only %d of %d messages arrived within %v: %v", what, got, want, kafkaGoWait, seen)
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		}
		switch {
		case c.offset < from[c.partition] || c.offset >= to[c.partition]:
			t.Fatalf("%s: %s read %d/%d, outside [%d, %d)", what, c.reader, c.partition, c.offset, from[c.partition], to[c.partition])
		case seen[c.partition][c.offset]:
			t.Fatalf("%s: %d/%d was read twice (again by %s)", what, c.partition, c.offset, c.reader)
		case c.reader != owner[c.partition]:
			t.Fatalf("%s: %s read %d/%d, which %s owns", what, c.reader, c.partition, c.offset, owner[c.partition])
		case strings.TrimPrefix(c.value, "hold-") != fmt.Sprintf("%d-%d", c.partition, c.offset):
			t.Fatalf("%s: %d/%d holds %q", what, c.partition, c.offset, c.value)
		}
		seen[c.partition][c.offset] = true
	}
}

// waitCommitted polls the group's committed offsets until they equal want.
func waitCommitted(ctx context.Context, t testing.TB, adm *kadm.Client, group, topic string, want map[int32]int64) {
	t.Helper()
	got := make(map[int32]int64)
	if !ktest.Until(ctx, pollEvery, func() bool {
		resp, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return false
		}
		for p := range want {
			got[p] = -1
			if o, ok := resp.Lookup(topic, p); ok && o.Err == nil {
				got[p] = o.At
			}
		}
		return maps.Equal(got, want)
	}) {
		t.Fatalf("group %s committed %v, want %v", group, got, want)
	}
}

// kafkaGoGroupScenario runs two group Readers over four partitions, closes
// one so that the other takes its partitions over, and restarts a reader
// that must resume at the committed offsets.
func kafkaGoGroupScenario(t testing.TB) {
	b := startGroupBroker(t)
	ctx := testContext(t, 4*time.Minute)
	topic, group := groupNames(t)
	const partitions = 4
	kafkaGoCreateTopic(ctx, t, b, topic, partitions)
	adm := newAdmin(t, b)
	out := make(chan kafkaGoConsumed, 1<<12)
	zero := make(map[int32]int64)
	for p := range int32(partitions) {
		zero[p] = 0
	}

	// Two readers share the partitions; they read what is written after
	// the group settled, each message once, by the partition's owner, and
	// commit it.
	r0 := startKafkaGoMember(t, ctx, b, group, topic, "kafkago-0", out)
	r1 := startKafkaGoMember(t, ctx, b, group, topic, "kafkago-1", out)
	owner := waitKafkaGoGroup(ctx, t, adm, group, topic, partitions, "kafkago-0", "kafkago-1")
	t.Logf("owners with two readers: %v", owner)
	counts := make(map[string]int)
	for _, o := range owner {
		counts[o]++
	}
	if counts["kafkago-0"] == 0 || counts["kafkago-1"] == 0 {
		t.Fatalf("one reader got every partition: %v", owner)
	}
	ends := kafkaGoProduceGroup(ctx, t, b, topic, partitions, zero, 20, 0)
	collectKafkaGo(ctx, t, out, zero, ends, owner, "two readers")
	waitCommitted(ctx, t, adm, group, topic, ends)

	// r0 leaves; r1 takes its partitions over from the committed offsets.
	r0.stop(t)
	owner = waitKafkaGoGroup(ctx, t, adm, group, topic, partitions, "kafkago-1")
	from := ends
	ends = kafkaGoProduceGroup(ctx, t, b, topic, partitions, from, 10, 3)
	collectKafkaGo(ctx, t, out, from, ends, owner, "after a reader left")
	committed := make(map[int32]int64)
	for p, e := range ends {
		committed[p] = e - 3 // the held messages are not committed
	}
	waitCommitted(ctx, t, adm, group, topic, committed)
	r1.stop(t)

	// A new reader in the group resumes at the committed offsets: it gets
	// the uncommitted messages again and everything after them.
	ends = kafkaGoProduceGroup(ctx, t, b, topic, partitions, ends, 5, 0)
	startKafkaGoMember(t, ctx, b, group, topic, "kafkago-2", out)
	owner = waitKafkaGoGroup(ctx, t, adm, group, topic, partitions, "kafkago-2")
	collectKafkaGo(ctx, t, out, committed, ends, owner, "after the restart")
	waitCommitted(ctx, t, adm, group, topic, ends)
}
