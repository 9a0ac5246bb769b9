package broker_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func deleteRecords(t testing.TB, c *ktest.Conn, topic string, part int32, offset int64) kmsg.DeleteRecordsResponseTopicPartition {
	t.Helper()
	return deleteRecordsV(t, c, 1, topic, part, offset)
}

func deleteRecordsV(t testing.TB, c *ktest.Conn, v int16, topic string, part int32, offset int64) kmsg.DeleteRecordsResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrDeleteRecordsRequest()
	req.Version = v
	req.TimeoutMillis = 10000
	req.Topics = []kmsg.DeleteRecordsRequestTopic{{Topic: topic, Partitions: []kmsg.DeleteRecordsRequestTopicPartition{{Partition: part, Offset: offset}}}}
	resp := c.Do(req).(*kmsg.DeleteRecordsResponse)
	if len(resp.Topics) != 1 || resp.Topics[0].Topic != topic || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("delete records: %+v", resp.Topics)
	}
	return resp.Topics[0].Partitions[0]
}

func TestListOffsets(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 2)
	base := time.Now().Add(-time.Hour).UnixMilli()
	// Offsets 0-2 at base+0, +10, +20; 3-5 (gzip) at +100, +150, +125; 6 at
	// +30.
	produce(t, c, name, 0, makeBatch(t, batchOpts{firstTS: base, tsDeltas: []int64{0, 10, 20}}, "a", "b", "c"))
	produce(t, c, name, 0, makeBatch(t, batchOpts{firstTS: base + 100, tsDeltas: []int64{0, 50, 25}, gzip: true}, "d", "e", "f"))
	produce(t, c, name, 0, makeBatch(t, batchOpts{firstTS: base + 30}, "g"))

	type want struct {
		offset, ts int64
		epoch      int32
	}
	tests := []struct {
		name       string
		ts         int64
		minVersion int16
		want       want
	}{
		{"latest", -1, 0, want{7, -1, 0}},
		{"earliest", -2, 0, want{0, -1, 0}},
		{"max timestamp", -3, 7, want{4, base + 150, 0}},
		{"earliest local", -4, 8, want{0, -1, 0}},
		{"before everything", base - 1000, 1, want{0, base, 0}},
		{"exact first", base, 1, want{0, base, 0}},
		{"between records", base + 5, 1, want{1, base + 10, 0}},
		{"exact last of a batch", base + 20, 1, want{2, base + 20, 0}},
		{"first of the next batch", base + 21, 1, want{3, base + 100, 0}},
		{"inside a compressed batch", base + 130, 1, want{4, base + 150, 0}},
		{"after the max", base + 151, 1, want{-1, -1, -1}},
	}
	for v := int16(0); v <= 11; v++ {
		for _, tt := range tests {
			if v < tt.minVersion || (v == 0 && tt.ts >= 0) {
				continue
			}
			t.Run("v"+strconv.Itoa(int(v))+"/"+tt.name, func(t *testing.T) {
				resp := c.Do(listOffsetsReq(v, name, 0, tt.ts)).(*kmsg.ListOffsetsResponse)
				if len(resp.Topics) != 1 || resp.Topics[0].Topic != name || len(resp.Topics[0].Partitions) != 1 {
					t.Fatalf("response %+v", resp.Topics)
				}
				p := resp.Topics[0].Partitions[0]
				if p.ErrorCode != 0 || p.Partition != 0 {
					t.Fatalf("partition %d error %d", p.Partition, p.ErrorCode)
				}
				if v == 0 {
					if !slices.Equal(p.OldStyleOffsets, []int64{tt.want.offset}) {
						t.Fatalf("old style offsets %v, want [%d]", p.OldStyleOffsets, tt.want.offset)
					}
					return
				}
				if p.Offset != tt.want.offset || p.Timestamp != tt.want.ts {
					t.Fatalf("offset %d timestamp %d, want %d, %d", p.Offset, p.Timestamp, tt.want.offset, tt.want.ts)
				}
				// Kafka answers "no such timestamp" with offset -1,
				// timestamp -1 and leader epoch -1 (buildErrorResponse with
				// Errors.NONE).
				if v >= 4 && p.LeaderEpoch != tt.want.epoch {
					t.Fatalf("leader epoch %d, want %d", p.LeaderEpoch, tt.want.epoch)
				}
			})
		}
	}

	t.Run("empty partition", func(t *testing.T) {
		for _, ts := range []int64{-1, -2} {
			if p := listOffset(t, c, name, 1, ts); p.ErrorCode != 0 || p.Offset != 0 {
				t.Fatalf("ts %d: offset %d error %d", ts, p.Offset, p.ErrorCode)
			}
		}
		if p := listOffset(t, c, name, 1, -3); p.ErrorCode != 0 || p.Offset != -1 || p.Timestamp != -1 {
			t.Fatalf("max timestamp of an empty partition: offset %d timestamp %d", p.Offset, p.Timestamp)
		}
		if p := listOffset(t, c, name, 1, base); p.ErrorCode != 0 || p.Offset != -1 || p.Timestamp != -1 {
			t.Fatalf("timestamp in an empty partition: offset %d timestamp %d", p.Offset, p.Timestamp)
		}
	})

	for _, v := range []int16{0, 1, 7, 11} {
		t.Run("v"+strconv.Itoa(int(v))+"/unknown partition", func(t *testing.T) {
			for _, tp := range []struct {
				topic string
				part  int32
			}{{name, 2}, {name, -1}, {uniqueTopic(t, "nope"), 0}} {
				resp := c.Do(listOffsetsReq(v, tp.topic, tp.part, -1)).(*kmsg.ListOffsetsResponse)
				p := resp.Topics[0].Partitions[0]
				if p.ErrorCode != kerr.UnknownTopicOrPartition.Code || p.Partition != tp.part {
					t.Fatalf("%s-%d: partition %d error %d, want UNKNOWN_TOPIC_OR_PARTITION", tp.topic, tp.part, p.Partition, p.ErrorCode)
				}
				if v >= 1 && (p.Offset != -1 || p.Timestamp != -1) {
					t.Fatalf("%s-%d: offset %d timestamp %d on error", tp.topic, tp.part, p.Offset, p.Timestamp)
				}
			}
		})
	}

	t.Run("current leader epoch", func(t *testing.T) {
		for _, tt := range []struct {
			epoch int32
			want  int16
		}{{-1, 0}, {0, 0}, {5, kerr.UnknownLeaderEpoch.Code}} {
			req := listOffsetsReq(7, name, 0, -1)
			req.Topics[0].Partitions[0].CurrentLeaderEpoch = tt.epoch
			resp := c.Do(req).(*kmsg.ListOffsetsResponse)
			if code := resp.Topics[0].Partitions[0].ErrorCode; code != tt.want {
				t.Fatalf("epoch %d: error %d, want %d", tt.epoch, code, tt.want)
			}
		}
	})
}

func TestOffsetForLeaderEpoch(t *testing.T) {
	b := runBroker(t)
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	produce(t, c, name, 0, newBatch(t, "a", "b"))
	produce(t, c, name, 0, newBatch(t, "c"))

	req := func(v int16, topic string, part, epoch, current int32) kmsg.OffsetForLeaderEpochResponseTopicPartition {
		t.Helper()
		r := kmsg.NewPtrOffsetForLeaderEpochRequest()
		r.Version = v
		r.ReplicaID = -1
		r.Topics = []kmsg.OffsetForLeaderEpochRequestTopic{{Topic: topic, Partitions: []kmsg.OffsetForLeaderEpochRequestTopicPartition{{Partition: part, LeaderEpoch: epoch, CurrentLeaderEpoch: current}}}}
		resp := c.Do(r).(*kmsg.OffsetForLeaderEpochResponse)
		if len(resp.Topics) != 1 || resp.Topics[0].Topic != topic || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("response %+v", resp.Topics)
		}
		return resp.Topics[0].Partitions[0]
	}
	for v := int16(0); v <= 4; v++ {
		t.Run("v"+strconv.Itoa(int(v)), func(t *testing.T) {
			p := req(v, name, 0, 0, -1)
			if p.ErrorCode != 0 || p.EndOffset != 3 || (v >= 1 && p.LeaderEpoch != 0) {
				t.Fatalf("epoch 0: error %d, epoch %d, end offset %d; want 0, 3", p.ErrorCode, p.LeaderEpoch, p.EndOffset)
			}
			p = req(v, name, 0, 3, -1)
			if p.ErrorCode != 0 || p.EndOffset != -1 || (v >= 1 && p.LeaderEpoch != -1) {
				t.Fatalf("epoch 3: error %d, epoch %d, end offset %d; want -1, -1", p.ErrorCode, p.LeaderEpoch, p.EndOffset)
			}
			for _, tp := range []struct {
				topic string
				part  int32
			}{{uniqueTopic(t, "nope"), 0}, {name, 1}} {
				if p := req(v, tp.topic, tp.part, 0, -1); p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
					t.Fatalf("%s-%d: error %d, want UNKNOWN_TOPIC_OR_PARTITION", tp.topic, tp.part, p.ErrorCode)
				}
			}
			if v >= 2 {
				if p := req(v, name, 0, 0, 5); p.ErrorCode != kerr.UnknownLeaderEpoch.Code {
					t.Fatalf("current epoch 5: error %d, want UNKNOWN_LEADER_EPOCH", p.ErrorCode)
				}
				if p := req(v, name, 0, 0, 0); p.ErrorCode != 0 || p.EndOffset != 3 {
					t.Fatalf("current epoch 0: error %d, end offset %d", p.ErrorCode, p.EndOffset)
				}
			}
		})
	}
}

func TestDeleteRecords(t *testing.T) {
	dir := t.TempDir()
	b := runBroker(t, brokertest.WithDataDir(dir))
	c := dial(t, b)
	name := uniqueTopic(t, "")
	createTopic(t, c, name, 1)
	var batches [][]byte
	for range 3 {
		batch := newBatch(t, "a", "b")
		batches = append(batches, batch)
		produce(t, c, name, 0, batch)
	}

	for v := int16(0); v <= 2; v++ {
		if p := deleteRecordsV(t, c, v, uniqueTopic(t, "nope"), 0, 1); p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("v%d unknown topic: error %d", v, p.ErrorCode)
		}
		if p := deleteRecordsV(t, c, v, name, 1, 1); p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("v%d unknown partition: error %d", v, p.ErrorCode)
		}
		if p := deleteRecordsV(t, c, v, name, 0, 7); p.ErrorCode != kerr.OffsetOutOfRange.Code || p.LowWatermark != -1 {
			t.Fatalf("v%d past the high watermark: error %d, low watermark %d", v, p.ErrorCode, p.LowWatermark)
		}
	}
	if lo := listOffset(t, c, name, 0, -2); lo.Offset != 0 {
		t.Fatalf("log start %d after refused deletions", lo.Offset)
	}

	if p := deleteRecordsV(t, c, 0, name, 0, 3); p.ErrorCode != 0 || p.LowWatermark != 3 {
		t.Fatalf("delete to 3: error %d, low watermark %d", p.ErrorCode, p.LowWatermark)
	}
	if lo := listOffset(t, c, name, 0, -2); lo.Offset != 3 {
		t.Fatalf("log start %d, want 3", lo.Offset)
	}
	// The batch holding offset 3 (offsets 2-3) is still served from 3;
	// offset 2 is gone.
	if p := fetchOne(t, c, name, 0, 3); p.ErrorCode != 0 || p.LogStartOffset != 3 {
		t.Fatalf("fetch from 3: error %d, log start %d", p.ErrorCode, p.LogStartOffset)
	} else {
		expectBatches(t, p.RecordBatches, batches[1:], []int64{2, 4})
	}
	if p := fetchOne(t, c, name, 0, 2); p.ErrorCode != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch from 2: error %d, want OFFSET_OUT_OF_RANGE", p.ErrorCode)
	}
	// Moving the start backwards does nothing.
	if p := deleteRecordsV(t, c, 2, name, 0, 1); p.ErrorCode != 0 || p.LowWatermark != 3 {
		t.Fatalf("delete to 1: error %d, low watermark %d; want 0, 3", p.ErrorCode, p.LowWatermark)
	}
	// -1 means the high watermark.
	if p := deleteRecordsV(t, c, 2, name, 0, -1); p.ErrorCode != 0 || p.LowWatermark != 6 {
		t.Fatalf("delete to -1: error %d, low watermark %d; want 0, 6", p.ErrorCode, p.LowWatermark)
	}
	if p := fetchOne(t, c, name, 0, 6); p.ErrorCode != 0 || len(p.RecordBatches) != 0 || p.HighWatermark != 6 || p.LogStartOffset != 6 {
		t.Fatalf("fetch from 6: error %d, %d bytes, hwm %d, log start %d", p.ErrorCode, len(p.RecordBatches), p.HighWatermark, p.LogStartOffset)
	}
	if off := produce(t, c, name, 0, newBatch(t, "after")); off != 6 {
		t.Fatalf("produce after deleting everything at %d, want 6", off)
	}

	// The log start is durable.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := runBroker(t, brokertest.WithDataDir(dir))
	c2 := dial(t, b2)
	if lo := listOffset(t, c2, name, 0, -2); lo.Offset != 6 {
		t.Fatalf("log start %d after restart, want 6", lo.Offset)
	}
	if lo := listOffset(t, c2, name, 0, -1); lo.Offset != 7 {
		t.Fatalf("end offset %d after restart, want 7", lo.Offset)
	}
}

func TestRetention(t *testing.T) {
	b := runBroker(t, brokertest.WithConfig(func(c *broker.Config) { c.RetentionCheckInterval = 100 * time.Millisecond }))
	c := dial(t, b)

	t.Run("retention.bytes", func(t *testing.T) {
		name := uniqueTopic(t, "")
		var size int
		for i := range 5 {
			batch := newBatch(t, strings.Repeat("x", 1000))
			size = len(batch)
			if i == 0 {
				// Keep whole batches while the rest is at least
				// retention.bytes, as Kafka does with segments: 5 batches
				// of size s with a limit of 2.5 s keep 3.
				createTopic(t, c, name, 1, "retention.bytes", strconv.Itoa(size*5/2))
			}
			produce(t, c, name, 0, batch)
		}
		// A retention pass between two produces deletes fewer batches;
		// the log start reaches 2 once a pass sees all five.
		ktest.Eventually(t, "retention.bytes to advance the log start", func() bool {
			return listOffset(t, c, name, 0, -2).Offset >= 2
		})
		if lo := listOffset(t, c, name, 0, -2); lo.Offset != 2 {
			t.Fatalf("log start %d, want 2 (batches of %d bytes)", lo.Offset, size)
		}
		if p := fetchOne(t, c, name, 0, 0); p.ErrorCode != kerr.OffsetOutOfRange.Code {
			t.Fatalf("fetch from 0: error %d, log start %d", p.ErrorCode, p.LogStartOffset)
		}
	})

	t.Run("retention.ms", func(t *testing.T) {
		name := uniqueTopic(t, "")
		createTopic(t, c, name, 1, "retention.ms", "60000")
		old := time.Now().Add(-time.Hour).UnixMilli()
		produce(t, c, name, 0, makeBatch(t, batchOpts{firstTS: old}, "old", "older"))
		produce(t, c, name, 0, makeBatch(t, batchOpts{firstTS: old + 1}, "old too"))
		produce(t, c, name, 0, newBatch(t, "new"))
		// A pass between the two old batches deletes only the first.
		ktest.Eventually(t, "retention.ms to advance the log start", func() bool {
			return listOffset(t, c, name, 0, -2).Offset >= 3
		})
		if lo := listOffset(t, c, name, 0, -2); lo.Offset != 3 {
			t.Fatalf("log start %d, want 3", lo.Offset)
		}
		if lo := listOffset(t, c, name, 0, -1); lo.Offset != 4 {
			t.Fatalf("end offset %d, want 4", lo.Offset)
		}
	})

	t.Run("compact only is not deleted", func(t *testing.T) {
		name := uniqueTopic(t, "")
		createTopic(t, c, name, 1, "retention.ms", "1000", "cleanup.policy", "compact")
		old := time.Now().Add(-time.Hour).UnixMilli()
		produce(t, c, name, 0, makeBatch(t, batchOpts{firstTS: old}, "old"))
		// Several retention passes.
		deadline := time.Now().Add(500 * time.Millisecond)
		for time.Now().Before(deadline) {
			if lo := listOffset(t, c, name, 0, -2); lo.Offset != 0 {
				t.Fatalf("log start moved to %d on a compacted topic", lo.Offset)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
