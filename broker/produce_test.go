package broker_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestProduceVersions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	id := createTopic(t, c, name, 1)
	want := int64(0)
	for v := int16(3); v <= 13; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			acks := int16(-1)
			if v%2 == 1 {
				acks = 1
			}
			resp := c.Do(produceReq(v, acks, name, id, 0, newBatch(t, "a", "b"))).(*kmsg.ProduceResponse)
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("response %+v", resp.Topics)
			}
			st := resp.Topics[0]
			if v >= 13 && st.TopicID != id {
				t.Fatalf("topic ID %x, want %x", st.TopicID, id)
			}
			if v < 13 && st.Topic != name {
				t.Fatalf("topic %q", st.Topic)
			}
			p := st.Partitions[0]
			if p.ErrorCode != 0 || p.Partition != 0 {
				t.Fatalf("partition %d error %d (%s)", p.Partition, p.ErrorCode, deref(p.ErrorMessage))
			}
			if p.BaseOffset != want {
				t.Fatalf("base offset %d, want %d", p.BaseOffset, want)
			}
			if p.LogAppendTime != -1 {
				t.Fatalf("log append time %d for a CreateTime topic", p.LogAppendTime)
			}
			if v >= 5 && p.LogStartOffset != 0 {
				t.Fatalf("log start offset %d", p.LogStartOffset)
			}
			if v >= 8 && p.ErrorMessage != nil {
				t.Fatalf("error message %q on success", *p.ErrorMessage)
			}
			want += 2
		})
	}
	if lo := listOffset(t, c, name, 0, -1); lo.Offset != want {
		t.Fatalf("end offset %d, want %d", lo.Offset, want)
	}
}

// TestProduceOldVersions checks that Produce v0-v2 (message format v0/v1)
// are refused per partition with UNSUPPORTED_VERSION on an open connection.
func TestProduceOldVersions(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	// v0-v2 carrying v2 record batches are served, as Kafka 3 did.
	for v := int16(0); v <= 2; v++ {
		resp := c.Do(produceReq(v, -1, name, [16]byte{}, 0, newBatch(t, "a"))).(*kmsg.ProduceResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("v%d: response %+v", v, resp.Topics)
		}
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.BaseOffset != int64(v) {
			t.Fatalf("v%d: error %d, base offset %d", v, p.ErrorCode, p.BaseOffset)
		}
	}
	// An old message set is refused with UNSUPPORTED_FOR_MESSAGE_FORMAT,
	// and nothing is written.
	old := newBatch(t, "x")
	old[16] = 1
	resp := c.Do(produceReq(2, -1, name, [16]byte{}, 0, old)).(*kmsg.ProduceResponse)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.UnsupportedForMessageFormat.Code {
		t.Fatalf("magic 1 at v2: error %d, want UNSUPPORTED_FOR_MESSAGE_FORMAT", code)
	}
	if lo := listOffset(t, c, name, 0, -1); lo.Offset != 3 {
		t.Fatalf("end offset %d, want 3", lo.Offset)
	}
}

func TestProduceErrors(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	id := createTopic(t, c, name, 1)
	small := uniqueTopic(t, "small")
	createTopic(t, c, small, 1, "max.message.bytes", "1000")
	strict := uniqueTopic(t, "strict")
	createTopic(t, c, strict, 1, "min.insync.replicas", "2")
	produce(t, c, name, 0, newBatch(t, "first"))

	corrupt := newBatch(t, "x", "y")
	corrupt[len(corrupt)-1] ^= 0xff // a value byte: inside the CRC
	badCRC := newBatch(t, "x")
	badCRC[17] ^= 0x01
	magic1 := newBatch(t, "x")
	magic1[16] = 1
	miscount := newBatch(t, "x", "y")
	binary.BigEndian.PutUint32(miscount[57:], 3) // three records claimed, two present
	fixCRC(miscount)

	tests := []struct {
		name    string
		version int16
		acks    int16
		topic   string
		id      [16]byte
		part    int32
		records []byte
		want    int16
	}{
		{"acks=2", 9, 2, name, id, 0, newBatch(t, "x"), kerr.InvalidRequiredAcks.Code},
		{"acks=-2", 9, -2, name, id, 0, newBatch(t, "x"), kerr.InvalidRequiredAcks.Code},
		{"unknown topic", 9, -1, uniqueTopic(t, "nope"), id, 0, newBatch(t, "x"), kerr.UnknownTopicOrPartition.Code},
		{"partition out of range", 9, -1, name, id, 1, newBatch(t, "x"), kerr.UnknownTopicOrPartition.Code},
		{"negative partition", 9, -1, name, id, -1, newBatch(t, "x"), kerr.UnknownTopicOrPartition.Code},
		{"corrupt record bytes", 9, -1, name, id, 0, corrupt, kerr.CorruptMessage.Code},
		{"corrupt CRC field", 3, 1, name, id, 0, badCRC, kerr.CorruptMessage.Code},
		{"corrupt CRC v13", 13, -1, name, id, 0, corrupt, kerr.CorruptMessage.Code},
		{"larger than max.message.bytes", 9, -1, small, id, 0, newBatch(t, strings.Repeat("v", 2000)), kerr.MessageTooLarge.Code},
		{"two batches", 9, -1, name, id, 0, append(newBatch(t, "x"), newBatch(t, "y")...), kerr.InvalidRecord.Code},
		{"magic 1", 9, -1, name, id, 0, magic1, kerr.InvalidRecord.Code},
		{"control batch", 9, -1, name, id, 0, makeBatch(t, batchOpts{attrs: 0x20}, "x"), kerr.InvalidRecord.Code},
		{"record count mismatch", 9, -1, name, id, 0, miscount, kerr.InvalidRecord.Code},
		// Kafka's ProduceRequest.validateRecords finds no complete batch in
		// these ("must have at least one record batch per partition"):
		// INVALID_RECORD, not CORRUPT_MESSAGE.
		{"truncated batch", 9, -1, name, id, 0, newBatch(t, "x", "y")[:70], kerr.InvalidRecord.Code},
		{"shorter than a header", 9, -1, name, id, 0, newBatch(t, "x")[:20], kerr.InvalidRecord.Code},
		{"no records", 9, -1, name, id, 0, []byte{}, kerr.InvalidRecord.Code},
		{"unknown topic ID", 13, -1, "", [16]byte{9, 9, 9}, 0, newBatch(t, "x"), kerr.UnknownTopicID.Code},
		// One broker is an ISR of one; Kafka checks this before the records.
		{"acks=all below min.insync.replicas", 9, -1, strict, id, 0, newBatch(t, "x"), kerr.NotEnoughReplicas.Code},
		{"acks=all below min.insync.replicas, bad records", 9, -1, strict, id, 0, corrupt, kerr.NotEnoughReplicas.Code},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := c.Do(produceReq(tt.version, tt.acks, tt.topic, tt.id, tt.part, tt.records)).(*kmsg.ProduceResponse)
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("response %+v", resp.Topics)
			}
			p := resp.Topics[0].Partitions[0]
			if p.ErrorCode != tt.want || p.Partition != tt.part {
				t.Fatalf("partition %d error %d (%s), want %d", p.Partition, p.ErrorCode, deref(p.ErrorMessage), tt.want)
			}
			if p.BaseOffset != -1 {
				t.Errorf("base offset %d on error, want -1", p.BaseOffset)
			}
			if tt.version >= 8 && (p.ErrorMessage == nil || *p.ErrorMessage == "") {
				t.Error("no error message")
			}
			// Nothing was appended.
			if lo := listOffset(t, c, name, 0, -1); lo.Offset != 1 {
				t.Fatalf("end offset moved to %d", lo.Offset)
			}
		})
	}

	t.Run("min.insync.replicas leaves acks=1 alone", func(t *testing.T) {
		resp := c.Do(produceReq(9, 1, strict, id, 0, newBatch(t, "x"))).(*kmsg.ProduceResponse)
		if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.BaseOffset != 0 {
			t.Fatalf("acks=1: error %d (%s) at offset %d, want offset 0", p.ErrorCode, deref(p.ErrorMessage), p.BaseOffset)
		}
	})

	t.Run("max.message.bytes follows config changes", func(t *testing.T) {
		big := newBatch(t, strings.Repeat("v", 2000))
		resp := c.Do(incrementalReq(1, small, false, op(kmsg.IncrementalAlterConfigOpSet, "max.message.bytes", ptr("5000")))).(*kmsg.IncrementalAlterConfigsResponse)
		if resp.Resources[0].ErrorCode != 0 {
			t.Fatalf("alter: error %d", resp.Resources[0].ErrorCode)
		}
		if off := produce(t, c, small, 0, big); off != 0 {
			t.Fatalf("offset %d", off)
		}
	})
}

// TestProduceAcksZero checks that acks=0 gets no response but is written.
func TestProduceAcksZero(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	batch := newBatch(t, "fire", "and", "forget")
	c.Send(produceReq(9, 0, name, [16]byte{}, 0, batch))
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 12
	mdCorr := c.Send(md)
	resp := kmsg.NewPtrMetadataResponse()
	resp.Version = 12
	if got := c.Recv(resp); got != mdCorr {
		t.Fatalf("first response has correlation id %d, want the metadata's %d: acks=0 was answered", got, mdCorr)
	}
	ktest.Eventually(t, "the acks=0 batch to be readable", func() bool {
		return listOffset(t, c, name, 0, -1).Offset == 3
	})
	fp := fetchOne(t, c, name, 0, 0)
	if len(fp.RecordBatches) != len(batch) || !bytes.Equal(fp.RecordBatches[16:], batch[16:]) {
		t.Fatalf("fetched %d bytes, want the %d produced", len(fp.RecordBatches), len(batch))
	}
	// The connection stays open after a successful acks=0 produce.
	if off := produce(t, c, name, 0, newBatch(t, "after")); off != 3 {
		t.Fatalf("acks=-1 produce after acks=0 at offset %d, want 3", off)
	}
}

// TestProduceAcksZeroFailureClosesConnection checks that a failed acks=0
// produce closes the connection, as Kafka does, after answering the requests
// before it, and that nothing behind it is served.
func TestProduceAcksZeroFailureClosesConnection(t *testing.T) {
	b := runBroker(t)
	setup := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, setup, name, 1)
	for _, tc := range []struct {
		name  string
		topic string
		part  int32
	}{
		{"unknown topic", uniqueTopic(t, "nope"), 0},
		{"unknown partition", name, 1},
		{"negative partition", name, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, b)
			md := kmsg.NewPtrMetadataRequest()
			md.Version = 12
			mdCorr := c.Send(md)
			c.Send(produceReq(9, 0, tc.topic, [16]byte{}, tc.part, newBatch(t, "lost")))
			// Pipelined behind the failure: must not be appended.
			c.Send(produceReq(9, 0, name, [16]byte{}, 0, newBatch(t, "behind")))
			resp := kmsg.NewPtrMetadataResponse()
			resp.Version = 12
			if got := c.Recv(resp); got != mdCorr {
				t.Fatalf("first response has correlation id %d, want the metadata's %d", got, mdCorr)
			}
			c.ExpectClosed()
		})
	}
	if off := listOffset(t, setup, name, 0, -1).Offset; off != 0 {
		t.Fatalf("end offset %d: a produce behind a failed acks=0 produce was appended", off)
	}
}

func TestProduceIdempotent(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	pid := initProducerID(t, c, 4, nil)
	if pid.ErrorCode != 0 {
		t.Fatalf("init producer ID: error %d", pid.ErrorCode)
	}
	mk := func(seq int32, values ...string) []byte {
		return makeBatch(t, batchOpts{idempotent: true, producerID: pid.ProducerID, producerEpoch: pid.ProducerEpoch, sequence: seq}, values...)
	}
	first := mk(0, "a", "b")
	if off := produce(t, c, name, 0, first); off != 0 {
		t.Fatalf("first batch at %d", off)
	}
	if off := produce(t, c, name, 0, mk(2, "c")); off != 2 {
		t.Fatalf("second batch at %d", off)
	}
	// A retry of the first batch is not appended again; Kafka answers with
	// its original offset.
	if off := produce(t, c, name, 0, first); off != 0 {
		t.Fatalf("duplicate answered with offset %d, want 0", off)
	}
	if lo := listOffset(t, c, name, 0, -1); lo.Offset != 3 {
		t.Fatalf("end offset %d after a duplicate, want 3", lo.Offset)
	}
	resp := c.Do(produceReq(9, -1, name, [16]byte{}, 0, mk(5, "gap"))).(*kmsg.ProduceResponse)
	if code := resp.Topics[0].Partitions[0].ErrorCode; code != kerr.OutOfOrderSequenceNumber.Code {
		t.Fatalf("sequence gap: error %d, want OUT_OF_ORDER_SEQUENCE_NUMBER", code)
	}
}

// TestProduceConsumeKgo runs franz-go's producer and consumer against the
// broker: idempotent produce, ListOffsets, Fetch, decoding.
func TestProduceConsumeKgo(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 3)
	ctx := testContext(t)

	for _, codec := range []kgo.CompressionCodec{kgo.NoCompression(), kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		prod := newClient(t, b, kgo.ProducerBatchCompression(codec), kgo.DefaultProduceTopic(name), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
		var recs []*kgo.Record
		for i := range 30 {
			recs = append(recs, kgo.StringRecord("value-"+strconv.Itoa(i)))
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
		prod.Close()
	}

	cons := newClient(t, b, kgo.ConsumeTopics(name), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	seen := make(map[string]int)
	total := 0
	for total < 150 {
		fs := cons.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of 150 records: %v", total, err)
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			total++
		})
	}
	for i := range 30 {
		if n := seen["value-"+strconv.Itoa(i)]; n != 5 {
			t.Fatalf("value-%d consumed %d times, want 5", i, n)
		}
	}
}

// TestProducePipelined sends many produces on several connections without
// waiting: each connection's responses come back in request order with
// increasing offsets, and together the offsets are dense.
func TestProducePipelined(t *testing.T) {
	b := runBroker(t)
	setup := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, setup, name, 1)
	const conns, perConn = 4, 25
	results := make(chan []int64, conns)
	for range conns {
		c := dial(t, b)
		// All requests go out before any response is read; the responses
		// are small enough for the socket buffers.
		var corrs []int32
		for i := range perConn {
			corrs = append(corrs, c.Send(produceReq(9, -1, name, [16]byte{}, 0, newBatch(t, "r"+strconv.Itoa(i), "s"))))
		}
		go func() {
			var offs []int64
			for _, want := range corrs {
				resp := kmsg.NewPtrProduceResponse()
				resp.Version = 9
				// Off the test goroutine: errors, not t.Fatal.
				if err := c.ReadResponse(resp, want, testTimeout); err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
					t.Errorf("response %d: %v %+v", len(offs), err, resp.Topics)
					results <- nil
					return
				}
				offs = append(offs, resp.Topics[0].Partitions[0].BaseOffset)
			}
			results <- offs
		}()
	}
	seen := make(map[int64]bool)
	for range conns {
		var offs []int64
		select {
		case offs = <-results:
		case <-time.After(testTimeout):
			t.Fatal("pipelined produces not answered")
		}
		if len(offs) != perConn {
			t.Fatal("a connection got a wrong, failed or out-of-order response")
		}
		for i, o := range offs {
			if i > 0 && o <= offs[i-1] {
				t.Fatalf("offsets on one connection not increasing: %v", offs)
			}
			if o%2 != 0 || seen[o] {
				t.Fatalf("base offset %d repeated or not on a batch boundary", o)
			}
			seen[o] = true
		}
	}
	for o := int64(0); o < 2*conns*perConn; o += 2 {
		if !seen[o] {
			t.Fatalf("no batch at offset %d", o)
		}
	}
	if lo := listOffset(t, setup, name, 0, -1); lo.Offset != 2*conns*perConn {
		t.Fatalf("end offset %d", lo.Offset)
	}
}

// TestLogAppendTime checks a topic with message.timestamp.type=LogAppendTime:
// the broker stamps the batch's max timestamp and timestamp type, keeps the
// CRC valid, and reports the time in the Produce response.
func TestLogAppendTime(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1, "message.timestamp.type", "LogAppendTime")
	batch := makeBatch(t, batchOpts{firstTS: 1000, tsDeltas: []int64{0, 5}}, "a", "b")
	before := time.Now().UnixMilli()
	resp := c.Do(produceReq(9, -1, name, [16]byte{}, 0, batch)).(*kmsg.ProduceResponse)
	after := time.Now().UnixMilli()
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 || p.LogAppendTime < before || p.LogAppendTime > after {
		t.Fatalf("error %d, log append time %d not in [%d, %d]", p.ErrorCode, p.LogAppendTime, before, after)
	}
	got := fetchOne(t, c, name, 0, 0).RecordBatches
	if len(got) != len(batch) {
		t.Fatalf("fetched %d bytes, produced %d", len(got), len(batch))
	}
	if attrs := binary.BigEndian.Uint16(got[21:]); attrs&0x08 == 0 {
		t.Fatalf("attributes %#x lack the LogAppendTime bit", attrs)
	}
	if maxTS := int64(binary.BigEndian.Uint64(got[35:])); maxTS != p.LogAppendTime {
		t.Fatalf("max timestamp %d, want the append time %d", maxTS, p.LogAppendTime)
	}
	if crc := binary.BigEndian.Uint32(got[17:]); crc != crc32.Checksum(got[21:], castagnoli) {
		t.Fatal("stamped batch has a bad CRC")
	}
	if !bytes.Equal(got[23:35], batch[23:35]) || !bytes.Equal(got[43:], batch[43:]) {
		t.Fatal("batch changed beyond attributes, max timestamp and CRC")
	}
	// Timestamps are the append time now.
	if lo := listOffset(t, c, name, 0, p.LogAppendTime); lo.Offset != 0 || lo.Timestamp != p.LogAppendTime {
		t.Fatalf("offset for the append time: %d at %d", lo.Offset, lo.Timestamp)
	}
	if lo := listOffset(t, c, name, 0, 2000); lo.Offset != 0 {
		t.Fatalf("offset for ts 2000: %d, want 0 (records carry the append time)", lo.Offset)
	}
}
