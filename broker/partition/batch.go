package partition

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Byte offsets of the fields of a v2 record batch header.
const (
	offBaseOffset      = 0
	offLength          = 8
	offLeaderEpoch     = 12
	offMagic           = 16
	offCRC             = 17
	offAttributes      = 21
	offLastOffsetDelta = 23
	offFirstTimestamp  = 27
	offMaxTimestamp    = 35
	offProducerID      = 43
	offProducerEpoch   = 51
	offBaseSequence    = 53
	offNumRecords      = 57
	batchHeaderSize    = 61

	attrCompression   = 0x07
	attrLogAppendTime = 0x08
	attrTransactional = 0x10
	attrControl       = 0x20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// BatchHeader holds the fields of a v2 record batch header that the broker
// looks at.
type BatchHeader struct {
	Length          int32 // bytes after the Length field
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// Size is the whole batch's size in bytes.
func (h *BatchHeader) Size() int { return int(h.Length) + 12 }

// Idempotent reports whether the batch carries a producer ID and sequence.
func (h *BatchHeader) Idempotent() bool { return h.ProducerID >= 0 }

// LastSequence is the sequence number of the batch's last record.
func (h *BatchHeader) LastSequence() int32 {
	s := int64(h.BaseSequence) + int64(h.LastOffsetDelta)
	if s > 1<<31-1 {
		s -= 1 << 31 // sequences wrap to 0 after MaxInt32
	}
	return int32(s)
}

// Codec is the batch's compression codec.
func (h *BatchHeader) Codec() kgo.CompressionCodecType {
	return kgo.CompressionCodecType(h.Attributes & attrCompression)
}

// ParseHeader reads the header of the batch at the start of b without
// checking its CRC. It fails with ErrCorruptBatch when b is too short to
// hold the batch the header announces.
func ParseHeader(b []byte) (BatchHeader, error) {
	var h BatchHeader
	// Message sets v0 and v1 keep their magic byte at the same place.
	if len(b) > offMagic && b[offMagic] < 2 {
		return h, fmt.Errorf("%w: magic %d", ErrOldMessageFormat, b[offMagic])
	}
	if len(b) < batchHeaderSize {
		return h, fmt.Errorf("%w: %d bytes hold no complete record batch", ErrInvalidRecord, len(b))
	}
	if magic := int8(b[offMagic]); magic != 2 {
		return h, fmt.Errorf("%w: magic %d, only v2 record batches are accepted", ErrInvalidRecord, magic)
	}
	h.Length = int32(binary.BigEndian.Uint32(b[offLength:]))
	if h.Length < batchHeaderSize-12 || int64(h.Length)+12 > int64(len(b)) {
		return h, fmt.Errorf("%w: batch length %d does not fit %d bytes, so there is no complete record batch", ErrInvalidRecord, h.Length, len(b))
	}
	h.Attributes = int16(binary.BigEndian.Uint16(b[offAttributes:]))
	h.LastOffsetDelta = int32(binary.BigEndian.Uint32(b[offLastOffsetDelta:]))
	h.FirstTimestamp = int64(binary.BigEndian.Uint64(b[offFirstTimestamp:]))
	h.MaxTimestamp = int64(binary.BigEndian.Uint64(b[offMaxTimestamp:]))
	h.ProducerID = int64(binary.BigEndian.Uint64(b[offProducerID:]))
	h.ProducerEpoch = int16(binary.BigEndian.Uint16(b[offProducerEpoch:]))
	h.BaseSequence = int32(binary.BigEndian.Uint32(b[offBaseSequence:]))
	h.NumRecords = int32(binary.BigEndian.Uint32(b[offNumRecords:]))
	return h, nil
}

// CheckProduced validates the record data of one partition of a Produce
// request: exactly one v2 batch, intact CRC, a record count that matches
// its offsets, no control batch, a known codec. It reads only the header and
// computes the CRC; records are not decoded.
func CheckProduced(b []byte) (BatchHeader, error) {
	h, err := ParseHeader(b)
	if err != nil {
		return h, err
	}
	if h.Size() != len(b) {
		return h, fmt.Errorf("%w: a produced partition must hold exactly one record batch", ErrInvalidRecord)
	}
	if want, got := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[offAttributes:], castagnoli); want != got {
		return h, fmt.Errorf("%w: CRC %08x, computed %08x", ErrCorruptBatch, want, got)
	}
	if h.NumRecords <= 0 || h.LastOffsetDelta != h.NumRecords-1 {
		return h, fmt.Errorf("%w: %d records with last offset delta %d", ErrInvalidRecord, h.NumRecords, h.LastOffsetDelta)
	}
	if h.Attributes&attrControl != 0 {
		return h, fmt.Errorf("%w: clients may not produce control batches", ErrInvalidRecord)
	}
	if c := h.Codec(); c > kgo.CodecZstd {
		return h, fmt.Errorf("%w: unknown compression codec %d", ErrCorruptBatch, c)
	}
	return h, nil
}

// stamp writes the broker-assigned fields into a batch in place: its base
// offset and leader epoch (outside the CRC), and for LogAppendTime topics
// the append time as max timestamp with the timestamp-type bit, which are
// inside the CRC, so the CRC is recomputed.
func stamp(b []byte, baseOffset int64, epoch int32, logAppendTime int64) {
	binary.BigEndian.PutUint64(b[offBaseOffset:], uint64(baseOffset))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
	if logAppendTime >= 0 {
		attrs := binary.BigEndian.Uint16(b[offAttributes:]) | attrLogAppendTime
		binary.BigEndian.PutUint16(b[offAttributes:], attrs)
		binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(logAppendTime))
		binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	}
}

// recordTimes calls fn with the offset and timestamp of each record of a
// stored batch, decompressing it if needed, until fn returns false.
func recordTimes(b []byte, dec kgo.Decompressor, fn func(offset, ts int64) bool) error {
	h, err := ParseHeader(b)
	if err != nil {
		return err
	}
	base := int64(binary.BigEndian.Uint64(b[offBaseOffset:]))
	if h.Attributes&attrLogAppendTime != 0 {
		// Every record of a LogAppendTime batch carries the append time.
		for i := int64(0); i <= int64(h.LastOffsetDelta); i++ {
			if !fn(base+i, h.MaxTimestamp) {
				return nil
			}
		}
		return nil
	}
	recs := b[batchHeaderSize:h.Size()]
	if h.Codec() != kgo.CodecNone {
		if recs, err = dec.Decompress(recs, h.Codec()); err != nil {
			return fmt.Errorf("%w: %w", ErrCorruptBatch, err)
		}
	}
	for n := int32(0); n < h.NumRecords && len(recs) > 0; n++ {
		length, k := binary.Varint(recs)
		if k <= 0 || length < 0 || int64(len(recs)-k) < length {
			return fmt.Errorf("%w: bad record length", ErrCorruptBatch)
		}
		rec := recs[k : k+int(length)]
		recs = recs[k+int(length):]
		if len(rec) < 1 {
			return fmt.Errorf("%w: empty record", ErrCorruptBatch)
		}
		tsDelta, k1 := binary.Varint(rec[1:])
		if k1 <= 0 {
			return fmt.Errorf("%w: bad record timestamp", ErrCorruptBatch)
		}
		offDelta, k2 := binary.Varint(rec[1+k1:])
		if k2 <= 0 {
			return fmt.Errorf("%w: bad record offset", ErrCorruptBatch)
		}
		if !fn(base+offDelta, h.FirstTimestamp+tsDelta) {
			return nil
		}
	}
	return nil
}

// checkStored verifies a stored batch's checksum (which stamping keeps
// right), so that bytes the disk changed are never served.
func checkStored(b []byte) error {
	if len(b) < offAttributes {
		return fmt.Errorf("%w: %w: %d bytes", ErrStorage, ErrDamaged, len(b))
	}
	if want, got := binary.BigEndian.Uint32(b[offCRC:]), crc32.Checksum(b[offAttributes:], castagnoli); want != got {
		return fmt.Errorf("%w: %w: batch at offset %d fails its checksum", ErrStorage, ErrDamaged, int64(binary.BigEndian.Uint64(b)))
	}
	return nil
}
