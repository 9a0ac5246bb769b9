package partition

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"sort"
)

// Transactions in a partition log. A transactional producer's batches
// (attribute bit 0x10) open a transaction in each partition they reach;
// the transaction coordinator ends it with a control batch (bit 0x20), the
// marker, whose one record's key says commit or abort. The committed log
// tells every replica the same: the first offset of each open transaction,
// and the aborted ones, which read_committed consumers skip. The last
// stable offset (LSO) is the first offset of the oldest open transaction,
// or the high watermark when none is open; read_committed reads stop
// there.

// Control record types (the marker's key).
const (
	markerAbort  int16 = 0
	markerCommit int16 = 1
)

// AbortedTxn is one aborted transaction of a partition: its producer, its
// first offset here, and the offset of its abort marker.
type AbortedTxn struct {
	ProducerID  int64 `json:"p"`
	FirstOffset int64 `json:"f"`
	LastOffset  int64 `json:"l"`
}

// txnState is the transactions of a committed log.
type txnState struct {
	open    map[int64]int64 // producer ID → first offset of its open transaction
	aborted []AbortedTxn    // by LastOffset
}

func newTxnState() txnState { return txnState{open: make(map[int64]int64)} }

// Transactional reports whether the batch belongs to a transaction.
func (h *BatchHeader) Transactional() bool { return h.Attributes&attrTransactional != 0 }

// Control reports whether the batch is a control batch (a marker).
func (h *BatchHeader) Control() bool { return h.Attributes&attrControl != 0 }

// txnChange is what one committed batch does to the transactions.
type txnChange struct {
	opened  bool // a transaction of the batch's producer starts at its base
	ended   bool // the batch is a marker that ends one
	aborted *AbortedTxn
}

// apply applies one committed batch at base: b is the whole batch.
func (t *txnState) apply(b []byte, h *BatchHeader, base int64) (txnChange, error) {
	var ch txnChange
	if !h.Transactional() || h.ProducerID < 0 {
		return ch, nil
	}
	if !h.Control() {
		if _, ok := t.open[h.ProducerID]; !ok {
			t.open[h.ProducerID] = base
			ch.opened = true
		}
		return ch, nil
	}
	kind, err := markerType(b, h)
	if err != nil {
		return ch, err
	}
	first, ok := t.open[h.ProducerID]
	if !ok {
		return ch, nil // nothing of the transaction reached this partition
	}
	delete(t.open, h.ProducerID)
	ch.ended = true
	if kind == markerAbort {
		a := AbortedTxn{ProducerID: h.ProducerID, FirstOffset: first, LastOffset: base}
		t.aborted = append(t.aborted, a)
		ch.aborted = &a
	}
	return ch, nil
}

// stable is the last stable offset given the high watermark.
func (t *txnState) stable(hwm int64) int64 {
	lso := hwm
	for _, first := range t.open {
		lso = min(lso, first)
	}
	return lso
}

// abortedIn returns the aborted transactions a read of [from, to) may
// touch: those whose marker is at or after from and that start before to.
func (t *txnState) abortedIn(from, to int64) []AbortedTxn {
	i := sort.Search(len(t.aborted), func(i int) bool { return t.aborted[i].LastOffset >= from })
	var out []AbortedTxn
	for _, a := range t.aborted[i:] {
		if a.FirstOffset < to {
			out = append(out, a)
		}
	}
	return out
}

// trim forgets aborted transactions wholly below the log start.
func (t *txnState) trim(logStart int64) {
	i := sort.Search(len(t.aborted), func(i int) bool { return t.aborted[i].LastOffset >= logStart })
	if i > 0 {
		t.aborted = slices.Clone(t.aborted[i:])
	}
}

// forget drops the aborted transactions compaction found without records
// (matched by producer and marker offset; see compactMarker).
func (t *txnState) forget(removed []AbortedTxn) {
	if len(removed) == 0 {
		return
	}
	gone := make(map[AbortedTxn]bool, len(removed))
	for _, a := range removed {
		gone[AbortedTxn{ProducerID: a.ProducerID, LastOffset: a.LastOffset}] = true
	}
	t.aborted = slices.DeleteFunc(slices.Clone(t.aborted), func(a AbortedTxn) bool {
		return gone[AbortedTxn{ProducerID: a.ProducerID, LastOffset: a.LastOffset}]
	})
}

func (t *txnState) clone() txnState {
	c := txnState{open: make(map[int64]int64, len(t.open)), aborted: slices.Clone(t.aborted)}
	for id, first := range t.open {
		c.open[id] = first
	}
	return c
}

// markerType reads the type of a control batch's marker record: its key
// is a version (0) and a type (0 abort, 1 commit).
func markerType(b []byte, h *BatchHeader) (int16, error) {
	if h.Codec() != 0 || h.NumRecords < 1 || len(b) < h.Size() {
		return 0, fmt.Errorf("%w: control batch without an uncompressed record", ErrInvalidRecord)
	}
	rec := b[batchHeaderSize:h.Size()]
	if _, n := binary.Varint(rec); n <= 0 { // record length
		return 0, fmt.Errorf("%w: control record length", ErrInvalidRecord)
	} else {
		rec = rec[n:]
	}
	if len(rec) < 1 {
		return 0, fmt.Errorf("%w: control record", ErrInvalidRecord)
	}
	rec = rec[1:] // attributes
	for range 2 { // timestamp delta, offset delta
		_, n := binary.Varint(rec)
		if n <= 0 {
			return 0, fmt.Errorf("%w: control record header", ErrInvalidRecord)
		}
		rec = rec[n:]
	}
	klen, n := binary.Varint(rec)
	if n <= 0 || klen < 4 || int64(len(rec)-n) < klen {
		return 0, fmt.Errorf("%w: control record key of %d bytes", ErrInvalidRecord, klen)
	}
	key := rec[n:]
	if v := int16(binary.BigEndian.Uint16(key)); v != 0 {
		return 0, fmt.Errorf("%w: control record key version %d", ErrInvalidRecord, v)
	}
	kind := int16(binary.BigEndian.Uint16(key[2:]))
	if kind != markerAbort && kind != markerCommit {
		return 0, fmt.Errorf("%w: control record type %d", ErrInvalidRecord, kind)
	}
	return kind, nil
}

// MarkerBatch builds the control batch that ends a transaction of
// producer id at epoch: a commit or an abort marker written by the
// coordinator of coordinatorEpoch, at time ts. Its base offset is stamped
// when it is appended.
func MarkerBatch(id int64, epoch int16, commit bool, coordinatorEpoch int32, ts int64) []byte {
	kind := markerAbort
	if commit {
		kind = markerCommit
	}
	var rec []byte
	rec = append(rec, 0)                        // attributes
	rec = binary.AppendVarint(rec, 0)           // timestamp delta
	rec = binary.AppendVarint(rec, 0)           // offset delta
	rec = binary.AppendVarint(rec, 4)           // key length
	rec = binary.BigEndian.AppendUint16(rec, 0) // key version
	rec = binary.BigEndian.AppendUint16(rec, uint16(kind))
	rec = binary.AppendVarint(rec, 6)           // value length
	rec = binary.BigEndian.AppendUint16(rec, 0) // value version
	rec = binary.BigEndian.AppendUint32(rec, uint32(coordinatorEpoch))
	rec = binary.AppendVarint(rec, 0) // headers
	b := make([]byte, batchHeaderSize, batchHeaderSize+len(rec)+binary.MaxVarintLen64)
	b = binary.AppendVarint(b, int64(len(rec)))
	b = append(b, rec...)
	binary.BigEndian.PutUint32(b[offLength:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], 0xffffffff)
	b[offMagic] = 2
	binary.BigEndian.PutUint16(b[offAttributes:], attrTransactional|attrControl)
	binary.BigEndian.PutUint32(b[offLastOffsetDelta:], 0)
	binary.BigEndian.PutUint64(b[offFirstTimestamp:], uint64(ts))
	binary.BigEndian.PutUint64(b[offMaxTimestamp:], uint64(ts))
	binary.BigEndian.PutUint64(b[offProducerID:], uint64(id))
	binary.BigEndian.PutUint16(b[offProducerEpoch:], uint16(epoch))
	binary.BigEndian.PutUint32(b[offBaseSequence:], 0xffffffff)
	binary.BigEndian.PutUint32(b[offNumRecords:], 1)
	binary.BigEndian.PutUint32(b[offCRC:], crc32.Checksum(b[offAttributes:], castagnoli))
	return b
}
