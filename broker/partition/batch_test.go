package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// batchSpec describes a record batch for tests.
type batchSpec struct {
	n          int
	firstTS    int64
	tsStep     int64
	producerID int64
	epoch      int16
	seq        int32
	codec      kgo.CompressionCodec
	valueSize  int
	txn        bool // transactional
}

// makeBatch encodes a valid v2 record batch the way a producer does.
func makeBatch(t testing.TB, s batchSpec) []byte {
	t.Helper()
	if s.n == 0 {
		s.n = 1
	}
	if s.producerID == 0 {
		s.producerID = -1
		s.epoch = -1
		s.seq = -1
	}
	var raw []byte
	maxTS := s.firstTS
	for i := 0; i < s.n; i++ {
		ts := int64(i) * s.tsStep
		if s.firstTS+ts > maxTS {
			maxTS = s.firstTS + ts
		}
		body := kmsg.Record{
			TimestampDelta64: ts,
			OffsetDelta:      int32(i),
			Key:              []byte{byte(i)},
			Value:            bytes.Repeat([]byte{byte('a' + i%26)}, max(s.valueSize, 1)),
			Headers:          []kmsg.Header{{Key: "h", Value: []byte("v")}},
		}
		enc := body.AppendTo(nil)
		// AppendTo writes Length as given; rewrite it as the real length.
		rec := binary.AppendVarint(nil, int64(len(enc)-1))
		rec = append(rec, enc[1:]...)
		raw = append(raw, rec...)
	}
	var attrs int16
	if s.codec != (kgo.CompressionCodec{}) {
		c, err := kgo.DefaultCompressor(s.codec)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		out, typ := c.Compress(&buf, raw)
		raw = append([]byte(nil), out...)
		attrs = int16(typ)
	}
	if s.txn {
		attrs |= attrTransactional
	}
	rb := kmsg.RecordBatch{
		Magic: 2, Attributes: attrs, LastOffsetDelta: int32(s.n - 1),
		FirstTimestamp: s.firstTS, MaxTimestamp: maxTS,
		ProducerID: s.producerID, ProducerEpoch: s.epoch, FirstSequence: s.seq,
		NumRecords: int32(s.n), Records: raw,
	}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}

func TestCheckProduced(t *testing.T) {
	good := makeBatch(t, batchSpec{n: 3, firstTS: 1000})
	if h, err := CheckProduced(good); err != nil || h.NumRecords != 3 {
		t.Fatalf("valid batch: %v %+v", err, h)
	}
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 0xff
	two := append(append([]byte(nil), good...), good...)
	magic1 := append([]byte(nil), good...)
	magic1[offMagic] = 1
	control := makeBatch(t, batchSpec{n: 1})
	binary.BigEndian.PutUint16(control[offAttributes:], attrControl)
	binary.BigEndian.PutUint32(control[offCRC:], crc32.Checksum(control[offAttributes:], castagnoli))
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"corrupt CRC":   {corrupt, ErrCorruptBatch},
		"truncated":     {good[:len(good)-5], ErrInvalidRecord},
		"short":         {good[:20], ErrInvalidRecord},
		"two batches":   {two, ErrInvalidRecord},
		"magic 1":       {magic1, ErrOldMessageFormat},
		"control batch": {control, ErrInvalidRecord},
	} {
		if _, err := CheckProduced(tc.b); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func TestStampLogAppendTimeKeepsCRCValid(t *testing.T) {
	b := makeBatch(t, batchSpec{n: 2, firstTS: 5})
	stamp(b, 42, 3, 99999)
	h, err := CheckProduced(b)
	if err != nil {
		t.Fatalf("stamped batch fails its CRC: %v", err)
	}
	if h.MaxTimestamp != 99999 || h.Attributes&attrLogAppendTime == 0 {
		t.Fatalf("append time not stamped: %+v", h)
	}
	if got := int64(binary.BigEndian.Uint64(b)); got != 42 {
		t.Fatalf("base offset %d", got)
	}
}

func TestRecordTimesAllCodecs(t *testing.T) {
	for _, c := range []kgo.CompressionCodec{{}, kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		b := makeBatch(t, batchSpec{n: 5, firstTS: 100, tsStep: 10, codec: c, valueSize: 200})
		stamp(b, 10, 0, -1)
		var got []int64
		err := recordTimes(b, kgo.DefaultDecompressor(), func(o, ts int64) bool {
			got = append(got, o, ts)
			return true
		})
		want := []int64{10, 100, 11, 110, 12, 120, 13, 130, 14, 140}
		if err != nil || len(got) != len(want) {
			t.Fatalf("codec %v: %v %v", c, err, got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("codec %v: got %v want %v", c, got, want)
			}
		}
	}
}

func FuzzCheckProduced(f *testing.F) {
	f.Add(makeBatch(f, batchSpec{n: 3, firstTS: 1}))
	f.Add(makeBatch(f, batchSpec{n: 2, codec: kgo.SnappyCompression()}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := CheckProduced(b)
		if err != nil {
			return
		}
		if h.Size() != len(b) {
			t.Fatalf("accepted batch of size %d from %d bytes", h.Size(), len(b))
		}
		_ = recordTimes(b, kgo.DefaultDecompressor(), func(int64, int64) bool { return true })
	})
}

func compressionForTest() kgo.CompressionCodec { return kgo.Lz4Compression() }
