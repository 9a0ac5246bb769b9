package broker_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testTimeout bounds every single network wait of a test.
const testTimeout = 10 * time.Second

// dial opens a raw connection to b. Every response must re-encode to
// exactly the bytes received, so one encoded at the wrong version does not
// slip through.
func dial(t testing.TB, b *broker.Broker) *ktest.Conn {
	t.Helper()
	c := ktest.Dial(t, b.Addr())
	c.ClientID = "pubg1-broker-test" // the prefix of member IDs
	c.Exact = true
	return c
}

func ptr[T any](v T) *T { return &v }

// uniqueTopic returns a topic name derived from the test's name.
func uniqueTopic(t testing.TB, suffix string) string {
	t.Helper()
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, t.Name())
	if suffix != "" {
		name += "." + suffix
	}
	if len(name) > 200 {
		name = name[len(name)-200:]
	}
	return name
}

// createTopic creates a topic over c at CreateTopics v7 and returns its ID.
func createTopic(t testing.TB, c *ktest.Conn, name string, partitions int32, configs ...string) [16]byte {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.Version = 7
	req.TimeoutMillis = 10000
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	for i := 0; i+1 < len(configs); i += 2 {
		cfg := kmsg.NewCreateTopicsRequestTopicConfig()
		cfg.Name, cfg.Value = configs[i], ptr(configs[i+1])
		rt.Configs = append(rt.Configs, cfg)
	}
	req.Topics = append(req.Topics, rt)
	resp := c.Do(req).(*kmsg.CreateTopicsResponse)
	if len(resp.Topics) != 1 || resp.Topics[0].ErrorCode != 0 {
		t.Fatalf("creating topic %s: %+v", name, resp.Topics)
	}
	if resp.Topics[0].TopicID == [16]byte{} {
		t.Fatalf("creating topic %s: zero topic ID", name)
	}
	return resp.Topics[0].TopicID
}

// batchOpts shape a record batch built by makeBatch.
type batchOpts struct {
	firstTS  int64   // first timestamp; 0 means now
	tsDeltas []int64 // per record timestamp deltas; missing ones are 0
	gzip     bool
	attrs    int16 // extra attribute bits, such as the control bit
	// idempotent sets the producer ID, epoch and first sequence below;
	// otherwise they are -1 as for a plain producer.
	idempotent    bool
	producerID    int64
	producerEpoch int16
	sequence      int32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// makeBatch encodes a v2 record batch as a producer does: base offset 0,
// partition leader epoch -1, no producer ID, the CRC-32C over everything
// from the attributes on.
func makeBatch(t testing.TB, o batchOpts, values ...string) []byte {
	t.Helper()
	if o.firstTS == 0 {
		o.firstTS = time.Now().UnixMilli()
	}
	var recs []byte
	maxTS := o.firstTS
	for i, v := range values {
		r := kmsg.NewRecord()
		if i < len(o.tsDeltas) {
			r.TimestampDelta64 = o.tsDeltas[i]
		}
		maxTS = max(maxTS, o.firstTS+r.TimestampDelta64)
		r.OffsetDelta = int32(i)
		r.Key = []byte(fmt.Sprintf("k%d", i))
		r.Value = []byte(v)
		// Length counts the bytes after the length varint itself.
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		recs = r.AppendTo(recs)
	}
	attrs := o.attrs
	if o.gzip {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(recs); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		recs = buf.Bytes()
		attrs |= int16(kgo.CodecGzip)
	}
	rb := kmsg.RecordBatch{
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           attrs,
		LastOffsetDelta:      int32(len(values) - 1),
		FirstTimestamp:       o.firstTS,
		MaxTimestamp:         maxTS,
		ProducerID:           -1,
		ProducerEpoch:        -1,
		FirstSequence:        -1,
		NumRecords:           int32(len(values)),
		Records:              recs,
	}
	if o.idempotent {
		rb.ProducerID, rb.ProducerEpoch, rb.FirstSequence = o.producerID, o.producerEpoch, o.sequence
	}
	b := rb.AppendTo(nil)
	rb.Length = int32(len(b) - 12)
	b = rb.AppendTo(b[:0])
	rb.CRC = int32(crc32.Checksum(b[21:], castagnoli))
	return rb.AppendTo(b[:0])
}

// fixCRC recomputes the CRC of a batch after its bytes were changed.
func fixCRC(b []byte) []byte {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

func newBatch(t testing.TB, values ...string) []byte { return makeBatch(t, batchOpts{}, values...) }

// produceReq builds a Produce request with one batch for one partition.
func produceReq(version int16, acks int16, topic string, id [16]byte, part int32, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.Acks = acks
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = part, batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// produce appends batch to topic/part with Produce v9, acks=-1, and returns
// the base offset.
func produce(t testing.TB, c *ktest.Conn, topic string, part int32, batch []byte) int64 {
	t.Helper()
	resp := c.Do(produceReq(9, -1, topic, [16]byte{}, part, batch)).(*kmsg.ProduceResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce to %s-%d: response %+v", topic, part, resp.Topics)
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		t.Fatalf("produce to %s-%d: error %d (%v)", topic, part, p.ErrorCode, deref(p.ErrorMessage))
	}
	return p.BaseOffset
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// fetchReq builds a Fetch request for one partition; MaxWait 0 so that it is
// answered at once.
func fetchReq(version int16, topic string, id [16]byte, part int32, offset int64) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.Version = version
	req.ReplicaID = -1
	req.MaxWaitMillis = 0
	req.MinBytes = 1
	req.MaxBytes = 50 << 20
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic, id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = part, offset, 10<<20
	rp.CurrentLeaderEpoch = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// fetchOne fetches one partition with Fetch v11 and returns its answer.
func fetchOne(t testing.TB, c *ktest.Conn, topic string, part int32, offset int64) kmsg.FetchResponseTopicPartition {
	t.Helper()
	resp := c.Do(fetchReq(11, topic, [16]byte{}, part, offset)).(*kmsg.FetchResponse)
	if resp.ErrorCode != 0 || len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch %s-%d: error %d, %d topics", topic, part, resp.ErrorCode, len(resp.Topics))
	}
	return resp.Topics[0].Partitions[0]
}

// listOffset asks ListOffsets v7 for one partition and timestamp.
func listOffset(t testing.TB, c *ktest.Conn, topic string, part int32, ts int64) kmsg.ListOffsetsResponseTopicPartition {
	t.Helper()
	resp := c.Do(listOffsetsReq(7, topic, part, ts)).(*kmsg.ListOffsetsResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("list offsets %s-%d: %+v", topic, part, resp.Topics)
	}
	return resp.Topics[0].Partitions[0]
}

func listOffsetsReq(version int16, topic string, part int32, ts int64) *kmsg.ListOffsetsRequest {
	req := kmsg.NewPtrListOffsetsRequest()
	req.Version = version
	req.ReplicaID = -1
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Partition, rp.Timestamp, rp.MaxNumOffsets, rp.CurrentLeaderEpoch = part, ts, 1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// metadataFor asks Metadata v12 about the named topics (nil: all).
func metadataFor(t testing.TB, c *ktest.Conn, allowAuto bool, names ...string) *kmsg.MetadataResponse {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 12
	req.AllowAutoTopicCreation = allowAuto
	if names != nil {
		req.Topics = []kmsg.MetadataRequestTopic{}
	}
	for _, n := range names {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = ptr(n)
		req.Topics = append(req.Topics, rt)
	}
	return c.Do(req).(*kmsg.MetadataResponse)
}

// isInternal reports whether a Metadata topic is internal; Metadata v0 has
// no flag for it.
func isInternal(t kmsg.MetadataResponseTopic) bool {
	return t.IsInternal || strings.HasPrefix(deref(t.Topic), "__")
}

// topicNames lists the names of the topics of a Metadata response that are
// not internal (every broker has __consumer_offsets).
func topicNames(resp *kmsg.MetadataResponse) []string {
	var out []string
	for _, t := range resp.Topics {
		if !isInternal(t) {
			out = append(out, deref(t.Topic))
		}
	}
	return out
}

// runBroker starts a broker for one test.
func runBroker(t testing.TB, opts ...brokertest.Option) *broker.Broker {
	t.Helper()
	return brokertest.Run(t, opts...)
}

// testContext is a context bounded by testTimeout.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// newClient is a franz-go client for b, closed when the test ends.
func newClient(t testing.TB, b *broker.Broker, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.Addr())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
