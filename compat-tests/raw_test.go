package compattests

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Raw protocol helpers: record batches built by hand, and a connection that
// writes frames and headers itself so tests control every byte.

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

// rawConn is a client connection that frames requests by hand.
type rawConn struct {
	t    testing.TB
	nc   net.Conn
	corr int32
}

const rawTimeout = 10 * time.Second

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, rawTimeout)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

// write sends bytes as they are.
func (c *rawConn) write(b []byte) {
	c.t.Helper()
	if err := c.nc.SetWriteDeadline(time.Now().Add(rawTimeout)); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("writing %d bytes: %v", len(b), err)
	}
}

// appendRequestHeader appends a request header: v2 (with an empty tagged
// field section) for flexible requests, v1 otherwise.
func appendRequestHeader(dst []byte, key, version int16, corr int32, flexible bool) []byte {
	const clientID = "pubg1-compat"
	dst = binary.BigEndian.AppendUint16(dst, uint16(key))
	dst = binary.BigEndian.AppendUint16(dst, uint16(version))
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(clientID)))
	dst = append(dst, clientID...)
	if flexible {
		dst = append(dst, 0)
	}
	return dst
}

// frame prefixes body with its size.
func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// send writes req at its version and returns its correlation id.
func (c *rawConn) send(req kmsg.Request) int32 {
	c.t.Helper()
	c.corr++
	body := appendRequestHeader(nil, req.Key(), req.GetVersion(), c.corr, req.IsFlexible())
	c.write(frame(req.AppendTo(body)))
	return c.corr
}

// readFrame reads one response frame and checks its correlation id; it
// returns what follows the correlation id.
func (c *rawConn) readFrame(corr int32, timeout time.Duration) []byte {
	c.t.Helper()
	if err := c.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		c.t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(c.nc, size[:]); err != nil {
		c.t.Fatalf("reading response size: %v", err)
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > 64<<20 {
		c.t.Fatalf("response frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.nc, body); err != nil {
		c.t.Fatalf("reading %d-byte response: %v", n, err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		c.t.Fatalf("response has correlation id %d, want %d", got, corr)
	}
	return body[4:]
}

// receive reads the response to request corr into resp, whose version
// must be set. Flexible responses other than ApiVersions have a tagged field
// section in their header.
func (c *rawConn) receive(resp kmsg.Response, corr int32, timeout time.Duration) {
	c.t.Helper()
	body := c.readFrame(corr, timeout)
	if resp.Key() != kmsg.ApiVersions.Int16() && resp.IsFlexible() {
		var err error
		if body, err = skipTaggedFields(body); err != nil {
			c.t.Fatalf("response header: %v", err)
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		c.t.Fatalf("decoding %s v%d response: %v", kmsg.NameForKey(resp.Key()), resp.GetVersion(), err)
	}
}

func skipTaggedFields(b []byte) ([]byte, error) {
	n, used := binary.Uvarint(b)
	if used <= 0 {
		return nil, errors.New("bad tagged field count")
	}
	b = b[used:]
	for range n {
		if _, used = binary.Uvarint(b); used <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[used:]
		size, used := binary.Uvarint(b)
		if used <= 0 || size > uint64(len(b)-used) {
			return nil, errors.New("bad tagged field size")
		}
		b = b[used+int(size):]
	}
	return b, nil
}

// roundTrip sends req and returns its response.
func (c *rawConn) roundTrip(req kmsg.Request) kmsg.Response {
	c.t.Helper()
	corr := c.send(req)
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	c.receive(resp, corr, rawTimeout)
	return resp
}

// expectClosed fails unless the broker closes the connection without
// answering.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	if err := c.nc.SetReadDeadline(time.Now().Add(rawTimeout)); err != nil {
		c.t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.nc.Read(buf)
	var ne net.Error
	switch {
	case n > 0:
		c.t.Fatalf("broker answered %d bytes instead of closing the connection: % x", n, buf[:n])
	case errors.As(err, &ne) && ne.Timeout():
		c.t.Fatalf("broker kept the connection open for %v", rawTimeout)
	case err == nil:
		c.t.Fatal("read returned nothing and no error")
	}
	// io.EOF or a reset: closed.
}

// apiMaxVersions asks the broker for its version ranges and returns the
// highest version of each key.
func (c *rawConn) apiMaxVersions() map[int16]int16 {
	c.t.Helper()
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "pubg1-compat", "1"
	resp := c.roundTrip(req).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 || len(resp.ApiKeys) == 0 {
		c.t.Fatalf("ApiVersions v3: error code %d, %d keys", resp.ErrorCode, len(resp.ApiKeys))
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
