package partition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Log compaction (cleanup.policy=compact), as Kafka defines it: of the
// records with the same key, only the latest is kept; a record with a null
// value (a tombstone) is kept for delete.retention.ms and then removed too.
// Offsets never change: a compacted batch keeps its base offset and last
// offset delta, and holds fewer records, so the log has gaps. Records
// without a key are kept.
//
// Compaction works on the committed log below the dirty end, which excludes
// the newest stored unit (batch or Raft entry), like Kafka excludes the
// active segment. It runs when the part written since the last compaction
// is at least min.cleanable.dirty.ratio of the log.

// compactWriteBytes bounds the rewritten bytes of one compaction write.
const compactWriteBytes = 4 << 20

// CompactOptions are a compacted topic's settings.
type CompactOptions struct {
	// DeleteRetention is how long tombstones are kept (delete.retention.ms),
	// counted from the newest timestamp of their batch.
	DeleteRetention time.Duration
	// MinLag keeps records newer than this uncompacted
	// (min.compaction.lag.ms).
	MinLag time.Duration
	// DirtyRatio is min.cleanable.dirty.ratio: compaction runs once the
	// bytes written since the last run are at least this share of the log.
	// Zero compacts whenever anything is dirty.
	DirtyRatio float64
}

// CompactResult says what a compaction did.
type CompactResult struct {
	Ran                       bool
	BytesBefore, BytesAfter   int64
	RecordsRemoved            int
	BatchesRewritten, Emptied int
	// MarkersRemoved counts the transaction markers removed.
	MarkersRemoved int
}

// compactRecord is one record of a batch with the fields compaction needs.
type compactRecord struct {
	offset    int64
	key       []byte // nil for a record without a key
	tombstone bool
	raw       []byte // the record, without its length prefix
}

// eachRecord decodes the records of one batch (decompressing it) and calls
// fn for each. Control batches have no keys to compact and are skipped by
// the callers.
func eachRecord(b []byte, h BatchHeader, dec kgo.Decompressor, fn func(r compactRecord)) error {
	base := int64(binary.BigEndian.Uint64(b[offBaseOffset:]))
	recs := b[batchHeaderSize:h.Size()]
	if h.Codec() != kgo.CodecNone {
		var err error
		if recs, err = dec.Decompress(recs, h.Codec()); err != nil {
			return fmt.Errorf("%w: %w", ErrCorruptBatch, err)
		}
	}
	for n := int32(0); n < h.NumRecords; n++ {
		length, k := binary.Varint(recs)
		if k <= 0 || length < 1 || int64(len(recs)-k) < length {
			return fmt.Errorf("%w: bad record length", ErrCorruptBatch)
		}
		rec := recs[k : k+int(length)]
		recs = recs[k+int(length):]
		// attributes, timestamp delta, offset delta, key length, key,
		// value length, ...
		pos := 1
		varint := func() (int64, error) {
			if pos > len(rec) {
				return 0, fmt.Errorf("%w: record fields overrun the record", ErrCorruptBatch)
			}
			v, k := binary.Varint(rec[pos:])
			if k <= 0 {
				return 0, fmt.Errorf("%w: bad record field", ErrCorruptBatch)
			}
			pos += k
			return v, nil
		}
		var tsDelta, offDelta, keyLen, valueLen int64
		var err error
		for _, f := range []*int64{&tsDelta, &offDelta, &keyLen} {
			if *f, err = varint(); err != nil {
				return err
			}
		}
		r := compactRecord{offset: base + offDelta, raw: rec}
		if keyLen >= 0 {
			if int64(len(rec)-pos) < keyLen {
				return fmt.Errorf("%w: record key overruns the record", ErrCorruptBatch)
			}
			r.key = rec[pos : pos+int(keyLen)]
			pos += int(keyLen)
		}
		if valueLen, err = varint(); err != nil {
			return err
		}
		r.tombstone = valueLen < 0
		fn(r)
	}
	return nil
}

// CheckKeyed fails with ErrInvalidRecord when a produced batch for a
// compacted topic holds a record without a key, as Kafka does.
func CheckKeyed(b []byte, h BatchHeader, dec kgo.Decompressor) error {
	var missing int64 = -1
	err := eachRecord(b, h, dec, func(r compactRecord) {
		if r.key == nil && missing < 0 {
			missing = r.offset - int64(binary.BigEndian.Uint64(b[offBaseOffset:]))
		}
	})
	if err != nil {
		return err
	}
	if missing >= 0 {
		return fmt.Errorf("%w: compacted topic cannot accept a record without a key (record %d of the batch)", ErrInvalidRecord, missing)
	}
	return nil
}

// compactor holds the codecs and buffers of compaction runs.
type compactor struct {
	dec kgo.Decompressor

	mu   sync.Mutex
	comp map[kgo.CompressionCodecType]kgo.Compressor
	buf  bytes.Buffer
}

var codecOf = map[kgo.CompressionCodecType]kgo.CompressionCodec{
	kgo.CodecGzip: kgo.GzipCompression(), kgo.CodecSnappy: kgo.SnappyCompression(),
	kgo.CodecLz4: kgo.Lz4Compression(), kgo.CodecZstd: kgo.ZstdCompression(),
}

func newCompactor(dec kgo.Decompressor) *compactor {
	return &compactor{dec: dec, comp: make(map[kgo.CompressionCodecType]kgo.Compressor)}
}

// keyMap is the offset of the latest record of every key, and the aborted
// transactions of the part compacted: their records are not the latest of
// anything, and compaction removes them, as Kafka's cleaner does.
type keyMap struct {
	latest  map[string]int64
	aborted abortedSet
	// txnData marks the producers whose current transaction has records
	// left, as compaction goes through the log in order: its marker
	// stays. removedAborts are the aborted transactions compaction found
	// without records and past delete.retention.ms: their markers are
	// removed (unless keepMarkers) and their entries in the aborted list
	// go too.
	txnData       map[int64]bool
	removedAborts []AbortedTxn
	// keepMarkers keeps every marker (a replicated partition's, see
	// compactMarker).
	keepMarkers bool
}

func newKeyMap(aborted []AbortedTxn) keyMap {
	m := keyMap{latest: make(map[string]int64), aborted: make(abortedSet), txnData: make(map[int64]bool)}
	for _, a := range aborted {
		m.aborted[a.ProducerID] = append(m.aborted[a.ProducerID], a)
	}
	return m
}

// abortedSet is aborted transactions by producer.
type abortedSet map[int64][]AbortedTxn

// holds reports whether the batch at base belongs to an aborted transaction.
func (s abortedSet) holds(h *BatchHeader, base int64) bool {
	if !h.Transactional() || h.Control() {
		return false
	}
	for _, a := range s[h.ProducerID] {
		if base >= a.FirstOffset && base <= a.LastOffset {
			return true
		}
	}
	return false
}

// scan adds the records of batch b to m.
func (c *compactor) scan(m keyMap, b []byte) error {
	h, err := ParseHeader(b)
	if err != nil || h.Attributes&attrControl != 0 || m.aborted.holds(&h, int64(binary.BigEndian.Uint64(b))) {
		return err
	}
	return eachRecord(b, h, c.dec, func(r compactRecord) {
		if r.key != nil {
			m.latest[string(r.key)] = r.offset
		}
	})
}

// compactBatch returns batch b without the records that m supersedes and
// without tombstones older than tombstoneCutoff. keepEmpty keeps a batch
// that loses every record as a batch without records (its offsets and
// producer fields intact); otherwise such a batch comes back nil. changed
// is false, and out is b, when nothing is removed.
func (c *compactor) compactBatch(m *keyMap, b []byte, tombstoneCutoff int64, keepEmpty bool) (out []byte, removed int, err error) {
	h, err := ParseHeader(b)
	if err != nil {
		return nil, 0, err
	}
	b = b[:h.Size()]
	if h.Control() {
		return m.compactMarker(b, &h, tombstoneCutoff)
	}
	aborted := m.aborted.holds(&h, int64(binary.BigEndian.Uint64(b)))
	defer func() {
		if err == nil && h.Transactional() && h.NumRecords > int32(removed) {
			m.txnData[h.ProducerID] = true
		}
	}()
	var kept [][]byte
	err = eachRecord(b, h, c.dec, func(r compactRecord) {
		switch {
		case aborted:
			removed++
			return
		case r.key == nil:
		case m.latest[string(r.key)] != r.offset:
			removed++
			return
		case r.tombstone && h.MaxTimestamp < tombstoneCutoff:
			removed++
			return
		}
		kept = append(kept, r.raw)
	})
	if err != nil || removed == 0 {
		return b, 0, err
	}
	if len(kept) == 0 && !keepEmpty {
		return nil, removed, nil
	}
	var body []byte
	for _, r := range kept {
		body = binary.AppendVarint(body, int64(len(r)))
		body = append(body, r...)
	}
	codec := h.Codec()
	if len(body) == 0 {
		codec = kgo.CodecNone // nothing to decompress
	} else if codec != kgo.CodecNone {
		body, codec, err = c.compress(body, codec)
		if err != nil {
			return nil, 0, err
		}
	}
	out = make([]byte, batchHeaderSize, batchHeaderSize+len(body))
	copy(out, b[:batchHeaderSize])
	out = append(out, body...)
	binary.BigEndian.PutUint32(out[offLength:], uint32(len(out)-12))
	attrs := (h.Attributes &^ attrCompression) | int16(codec)
	binary.BigEndian.PutUint16(out[offAttributes:], uint16(attrs))
	binary.BigEndian.PutUint32(out[offNumRecords:], uint32(len(kept)))
	binary.BigEndian.PutUint32(out[offCRC:], crc32.Checksum(out[offAttributes:], castagnoli))
	return out, removed, nil
}

// compactMarker removes transaction marker b, as Kafka's cleaner does,
// once no record of its transaction is left before it and it is older
// than tombstoneCutoff (delete.retention.ms). An abort marker's
// transaction then goes into m.removedAborts, to leave the aborted
// transactions read_committed fetches list: a client told of an aborted
// transaction skips its producer's batches until it reads the marker.
//
// With m.keepMarkers the marker stays and only the aborted transaction
// goes (a client that reads an abort marker of a transaction it was not
// told of ignores it). A replicated partition keeps the batches at the
// ends of its Raft entries, emptied, and a marker is usually the only
// batch of its entry: an empty control batch is not something Kafka
// writes, and kafka-go panics on one. Nor can a marker go from the middle
// of an entry: a replay of the log would see the emptied batches of its
// transaction left at entry ends open a transaction that never ends.
// Every pass forgets such aborted transactions again, for a replica that
// restored them from a snapshot older than the last pass.
func (m *keyMap) compactMarker(b []byte, h *BatchHeader, tombstoneCutoff int64) ([]byte, int, error) {
	hasData := m.txnData[h.ProducerID]
	delete(m.txnData, h.ProducerID)
	if !h.Transactional() || hasData || h.MaxTimestamp >= tombstoneCutoff {
		return b, 0, nil
	}
	kind, err := markerType(b, h)
	if err != nil {
		return nil, 0, err
	}
	if kind == markerAbort {
		m.removedAborts = append(m.removedAborts, AbortedTxn{ProducerID: h.ProducerID, LastOffset: int64(binary.BigEndian.Uint64(b))})
	}
	if m.keepMarkers {
		return b, 0, nil
	}
	return nil, int(h.NumRecords), nil
}

// compress compresses body with codec; a codec that fails to shrink it may
// leave it uncompressed, which the returned codec says.
func (c *compactor) compress(body []byte, codec kgo.CompressionCodecType) ([]byte, kgo.CompressionCodecType, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	comp := c.comp[codec]
	if comp == nil {
		var err error
		if comp, err = kgo.DefaultCompressor(codecOf[codec]); err != nil {
			return nil, 0, fmt.Errorf("partition: compressor for codec %d: %w", codec, err)
		}
		c.comp[codec] = comp
	}
	c.buf.Reset()
	out, used := comp.Compress(&c.buf, body)
	return bytes.Clone(out), used, nil
}

// scanUnit adds the records of every batch of one stored unit (a batch
// of a Local partition, a Raft entry of a Replicated one) to m.
func (c *compactor) scanUnit(m keyMap, data []byte) error {
	for len(data) > 0 {
		h, err := ParseHeader(data)
		if err != nil {
			return err
		}
		if err := c.scan(m, data[:h.Size()]); err != nil {
			return err
		}
		data = data[h.Size():]
	}
	return nil
}

// compactUnit compacts the batches of one stored unit against m. With
// keepEnds the unit's first and last batch are kept even without records,
// so that the offsets it covers stay visible. changed is false when
// nothing was removed; out is then nil.
func (c *compactor) compactUnit(m *keyMap, data []byte, tombstoneCutoff int64, keepEnds bool, res *CompactResult) (out []byte, changed bool, err error) {
	for n := 0; len(data) > 0; n++ {
		h, err := ParseHeader(data)
		if err != nil {
			return nil, false, err
		}
		b := data[:h.Size()]
		data = data[h.Size():]
		keepEmpty := keepEnds && (n == 0 || len(data) == 0)
		nb, removed, err := c.compactBatch(m, b, tombstoneCutoff, keepEmpty)
		if err != nil {
			return nil, false, err
		}
		if removed > 0 {
			changed = true
			if h.Control() {
				res.MarkersRemoved++
			} else {
				res.RecordsRemoved += removed
			}
			res.BatchesRewritten++
			if nb == nil || len(nb) == batchHeaderSize {
				res.Emptied++
			}
		}
		out = append(out, nb...)
	}
	if !changed {
		return nil, false, nil
	}
	return out, true, nil
}

// cleanablePart applies the rules of when and where compaction runs to a
// log of n stored units (oldest first; size, last offset and newest
// timestamp of each): the units it may touch are all but the newest, none
// at or past the last stable offset and none newer than minLag, and it runs once the bytes written at or after
// cleanedTo are at least min.cleanable.dirty.ratio of them. It returns how
// many units to compact (0: none) and their bytes.
func cleanablePart(n int, size, lastOffset, maxTS func(i int) int64, cleanedTo, stable int64, now time.Time, o CompactOptions) (end int, total int64) {
	end = n - 1
	// Nothing of an open transaction: it may still abort.
	for end > 0 && lastOffset(end-1) >= stable {
		end--
	}
	if o.MinLag > 0 {
		cutoff := now.Add(-o.MinLag).UnixMilli()
		for end > 0 && maxTS(end-1) > cutoff {
			end--
		}
	}
	var dirty int64
	for i := range max(end, 0) {
		total += size(i)
		if lastOffset(i) >= cleanedTo {
			dirty += size(i)
		}
	}
	if dirty == 0 || float64(dirty) < o.DirtyRatio*float64(total) {
		return 0, 0
	}
	return end, total
}
