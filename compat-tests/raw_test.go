package compattests

import (
	"hash/crc32"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Raw protocol helpers: record batches built by hand, and requests sent on a
// ktest.Conn, which writes frames and headers itself so tests control every
// byte.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// batchSpec describes a magic v2 record batch to build.
type batchSpec struct {
	producerID    int64 // -1: not idempotent
	producerEpoch int16
	firstSequence int32
	timestamp     time.Time
	values        [][]byte
}

// build encodes the batch with its length and CRC-32C set, as a producer
// sends it.
func (s batchSpec) build() []byte {
	var records []byte
	for i, v := range s.values {
		r := kmsg.Record{OffsetDelta: int32(i), Key: []byte{'k', byte('0' + i%10)}, Value: v}
		// Length counts the bytes after its own varint; with Length 0
		// that varint is one byte.
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		records = r.AppendTo(records)
	}
	ts := s.timestamp.UnixMilli()
	batch := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(len(s.values) - 1),
		FirstTimestamp:       ts,
		MaxTimestamp:         ts,
		ProducerID:           s.producerID,
		ProducerEpoch:        s.producerEpoch,
		FirstSequence:        s.firstSequence,
		NumRecords:           int32(len(s.values)),
		Records:              records,
	}
	if s.producerID < 0 {
		batch.ProducerEpoch, batch.FirstSequence = -1, -1
	}
	raw := batch.AppendTo(nil)
	// Length excludes FirstOffset and Length itself; the CRC covers
	// everything from Attributes (byte 21) on.
	batch.Length = int32(len(raw) - 12)
	raw = batch.AppendTo(raw[:0])
	batch.CRC = int32(crc32.Checksum(raw[21:], castagnoli))
	return batch.AppendTo(raw[:0])
}

// rawTimeout bounds each network wait of a raw connection.
const rawTimeout = ktest.DefaultTimeout

// compatClientID is the client ID of the raw connections' requests.
const compatClientID = "pubg1-compat"

// dialRaw opens a raw connection to addr, closed when the test ends.
func dialRaw(t testing.TB, addr string) *ktest.Conn {
	t.Helper()
	c := ktest.Dial(t, addr)
	c.ClientID = compatClientID
	return c
}

// appendRequestHeader appends a request header: v2 (with an empty tagged
// field section) for flexible requests, v1 otherwise.
func appendRequestHeader(dst []byte, key, version int16, corr int32, flexible bool) []byte {
	return ktest.AppendRequestHeader(dst, key, version, corr, compatClientID, flexible)
}

// apiMaxVersions asks the broker for its version ranges and returns the
// highest version of each key.
func apiMaxVersions(t testing.TB, c *ktest.Conn) map[int16]int16 {
	t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = compatClientID, "1"
	resp := c.Do(req).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 || len(resp.ApiKeys) == 0 {
		t.Fatalf("ApiVersions v3: error code %d, %d keys", resp.ErrorCode, len(resp.ApiKeys))
	}
	m := make(map[int16]int16, len(resp.ApiKeys))
	for _, k := range resp.ApiKeys {
		m[k.ApiKey] = k.MaxVersion
	}
	return m
}

// topicRef names a topic both ways: requests carry the name before the
// version that switched to topic IDs and the ID from then on.
type topicRef struct {
	name string
	id   [16]byte
}

// fetchRequest fetches one partition from offset.
func fetchRequest(version int16, topic topicRef, partition int32, offset int64, maxWait time.Duration, minBytes int32) *kmsg.FetchRequest {
	req := kmsg.NewPtrFetchRequest()
	req.SetVersion(version)
	req.MaxWaitMillis = int32(maxWait / time.Millisecond)
	req.MinBytes = minBytes
	req.MaxBytes = 50 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = topic.name, topic.id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, 10<<20
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// produceRequest produces one batch to one partition with acks=all.
func produceRequest(version int16, topic topicRef, partition int32, batch []byte) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.SetVersion(version)
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic, rt.TopicID = topic.name, topic.id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// onlyPartition returns the single partition of a one-partition Fetch
// response, decoded (CRCs checked, codecs undone) from offset on.
func onlyPartition(t testing.TB, resp *kmsg.FetchResponse, topic string, offset int64) kgo.FetchPartition {
	t.Helper()
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		t.Fatalf("Fetch failed as a whole: %v", err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("Fetch of one partition answered %d topics", len(resp.Topics))
	}
	rp := &resp.Topics[0].Partitions[0]
	// The record set is nullable in the schema, but Kafka always sends one,
	// empty when there is nothing (or an error), and librdkafka refuses a
	// null one ("invalid MessageSetSize -1").
	if rp.RecordBatches == nil {
		t.Errorf("Fetch v%d answered partition %d (error code %d) with a null record set; Kafka sends an empty one", resp.GetVersion(), rp.Partition, rp.ErrorCode)
	}
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: topic, Partition: rp.Partition, Offset: offset}, rp, kgo.DefaultDecompressor(), nil)
	return fp
}
