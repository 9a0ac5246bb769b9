package coordinator

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The records of __consumer_offsets are Kafka's own, so that tools reading
// the topic understand them: offset commits with an OffsetCommitKey
// (version 1) and an OffsetCommitValue (version 3, or 1 when the commit
// carries its own expiration), group metadata with a GroupMetadataKey
// (version 2) and a GroupMetadataValue (version 3). A null value deletes.
const (
	offsetCommitKeyVersion   = 1
	offsetCommitValueVersion = 3
	groupMetadataKeyVersion  = 2
	groupMetadataVersion     = 3
)

// topicPartition keys a group's offsets.
type topicPartition struct {
	topic     string
	partition int32
}

// offset is one committed offset.
type offset struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitTime  int64 // unix milliseconds
	expireTime  int64 // unix milliseconds; -1 unless the commit set it
}

func offsetKey(group string, tp topicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: offsetCommitKeyVersion, Group: group, Topic: tp.topic, Partition: tp.partition}
	return k.AppendTo(nil)
}

func offsetRecord(group string, tp topicPartition, o offset) kmsg.Record {
	v := kmsg.NewOffsetCommitValue()
	v.Version = offsetCommitValueVersion
	v.Offset, v.LeaderEpoch, v.Metadata, v.CommitTimestamp = o.offset, o.leaderEpoch, o.metadata, o.commitTime
	if o.expireTime >= 0 {
		v.Version, v.ExpireTimestamp = 1, o.expireTime
	}
	return kmsg.Record{Key: offsetKey(group, tp), Value: v.AppendTo(nil)}
}

func offsetTombstone(group string, tp topicPartition) kmsg.Record {
	return kmsg.Record{Key: offsetKey(group, tp)}
}

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: groupMetadataKeyVersion, Group: group}
	return k.AppendTo(nil)
}

func groupRecord(group string, v *kmsg.GroupMetadataValue) kmsg.Record {
	return kmsg.Record{Key: groupKey(group), Value: v.AppendTo(nil)}
}

func groupTombstone(group string) kmsg.Record {
	return kmsg.Record{Key: groupKey(group)}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeBatch encodes recs as one uncompressed, non-idempotent v2 record
// batch stamped now, as a producer would send it.
func encodeBatch(recs []kmsg.Record, now time.Time) []byte {
	return encodeBatchOf(recs, now, -1, -1)
}

// encodeBatchOf is encodeBatch for producer pid at epoch: a transactional
// batch without sequence numbers when pid is not -1, as Kafka writes the
// offsets of a transaction.
func encodeBatchOf(recs []kmsg.Record, now time.Time, pid int64, epoch int16) []byte {
	ts := now.UnixMilli()
	var body []byte
	for i := range recs {
		r := &recs[i]
		r.OffsetDelta = int32(i)
		r.TimestampDelta64, r.TimestampDelta, r.Attributes = 0, 0, 0
		// Length counts the bytes after itself; a zero Length takes one
		// byte, so the rest is the encoding minus that byte.
		r.Length = 0
		r.Length = int32(len(r.AppendTo(nil)) - 1)
		body = r.AppendTo(body)
	}
	var attrs int16
	if pid >= 0 {
		attrs = 0x10 // transactional
	}
	rb := kmsg.RecordBatch{
		Attributes:           attrs,
		FirstOffset:          0,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(len(recs) - 1),
		FirstTimestamp:       ts,
		MaxTimestamp:         ts,
		ProducerID:           pid,
		ProducerEpoch:        epoch,
		FirstSequence:        -1,
		NumRecords:           int32(len(recs)),
		Records:              body,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	// The CRC covers everything from the attributes (byte 21) on.
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// batchRecord is one record of an internal topic's batch.
type batchRecord struct {
	key, value []byte
	// producerID is the producer of a transactional batch, -1 for others.
	producerID int64
}

// eachRecord calls fn with every record of the v2 batches in b,
// decompressing them as needed, and marker, if set, with the producer and
// outcome of every transaction marker (control batches otherwise carry no
// records for the coordinators). It returns the offset after the last
// batch.
func eachRecord(b []byte, dec kgo.Decompressor, fn func(r batchRecord), marker func(pid int64, commit bool)) (next int64, err error) {
	for len(b) > 0 {
		if len(b) < 12 {
			return next, fmt.Errorf("%d bytes left hold no batch header", len(b))
		}
		size := 12 + int64(int32(binary.BigEndian.Uint32(b[8:])))
		if size < 61 || size > int64(len(b)) {
			return next, fmt.Errorf("batch of %d bytes does not fit %d", size, len(b))
		}
		var rb kmsg.RecordBatch
		if err := rb.ReadFrom(b[:size]); err != nil {
			return next, fmt.Errorf("reading batch header: %w", err)
		}
		b = b[size:]
		next = rb.FirstOffset + int64(rb.LastOffsetDelta) + 1
		recs := rb.Records
		if codec := kgo.CompressionCodecType(rb.Attributes & 0x07); codec != kgo.CodecNone {
			if recs, err = dec.Decompress(recs, codec); err != nil {
				return next, fmt.Errorf("decompressing batch at %d: %w", rb.FirstOffset, err)
			}
		}
		control, pid := rb.Attributes&0x20 != 0, int64(-1)
		if rb.Attributes&0x10 != 0 {
			pid = rb.ProducerID
		}
		for i := int32(0); i < rb.NumRecords; i++ {
			l, n := binary.Varint(recs)
			if n <= 0 || l < 0 || int64(len(recs)-n) < l {
				return next, fmt.Errorf("bad record length in batch at %d", rb.FirstOffset)
			}
			var r kmsg.Record
			if err := r.ReadFrom(recs[:n+int(l)]); err != nil {
				return next, fmt.Errorf("reading record of batch at %d: %w", rb.FirstOffset, err)
			}
			recs = recs[n+int(l):]
			if !control {
				fn(batchRecord{key: r.Key, value: r.Value, producerID: pid})
				continue
			}
			// A marker's key: version, then type (0 abort, 1 commit).
			if marker != nil && len(r.Key) >= 4 && pid >= 0 {
				if kind := int16(binary.BigEndian.Uint16(r.Key[2:])); kind == 0 || kind == 1 {
					marker(pid, kind == 1)
				}
			}
		}
	}
	return next, nil
}
