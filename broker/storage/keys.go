package storage

import (
	"encoding/binary"
	"fmt"
)

// Key layout shared by every partition of a broker:
//
//	batch: 'b' | AppendLogID(log) | LastOffset | BaseOffset | MaxTimestamp | Size
//	kv:    'k' | key
//
// LastOffset comes first and is big-endian so that key order is offset order
// and a seek to 'b'|log|from lands on the batch that contains from. The rest
// of the meta rides in the key so indexes rebuild from keys alone.
const (
	nsBatch = 'b'
	nsKV    = 'k'

	logIDLen       = 16 + 4
	batchPrefixLen = 1 + logIDLen
	metaLen        = 8 + 8 + 8 + 4
	batchKeyLen    = batchPrefixLen + metaLen

	// maxKVKeyLen keeps 'k'|key under Badger's 65,000-byte key limit.
	maxKVKeyLen = 64 << 10
)

func appendBatchPrefix(dst []byte, log LogID) []byte {
	return AppendLogID(append(dst, nsBatch), log)
}

// appendSeekKey appends the smallest key at or after which the batch holding
// offset from (the first with LastOffset >= from) is found.
func appendSeekKey(dst []byte, log LogID, from int64) []byte {
	return binary.BigEndian.AppendUint64(appendBatchPrefix(dst, log), uint64(max(from, 0)))
}

func appendBatchKey(dst []byte, log LogID, m BatchMeta) []byte {
	return appendMeta(appendBatchPrefix(dst, log), m)
}

func appendMeta(dst []byte, m BatchMeta) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.LastOffset))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.BaseOffset))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.MaxTimestamp))
	return binary.BigEndian.AppendUint32(dst, uint32(m.Size))
}

// decodeBatchKey returns the meta kept in a full batch key.
func decodeBatchKey(key []byte) (BatchMeta, error) {
	if len(key) != batchKeyLen {
		return BatchMeta{}, fmt.Errorf("%w: batch key of %d bytes, want %d", ErrCorrupt, len(key), batchKeyLen)
	}
	s := key[batchPrefixLen:]
	return BatchMeta{
		LastOffset:   int64(binary.BigEndian.Uint64(s)),
		BaseOffset:   int64(binary.BigEndian.Uint64(s[8:])),
		MaxTimestamp: int64(binary.BigEndian.Uint64(s[16:])),
		Size:         int32(binary.BigEndian.Uint32(s[24:])),
	}, nil
}

func appendKVKey(dst, key []byte) []byte {
	return append(append(dst, nsKV), key...)
}

// checkWrite rejects what either store could not keep with its ordering
// guarantees: negative or inverted offsets break key order.
func checkWrite(w *Write) error {
	for i := range w.Batches {
		m := &w.Batches[i].Meta
		if m.BaseOffset < 0 || m.LastOffset < m.BaseOffset {
			return fmt.Errorf("%w: batch offsets %d..%d", ErrInvalid, m.BaseOffset, m.LastOffset)
		}
	}
	for i := range w.KVs {
		if n := len(w.KVs[i].Key); n > maxKVKeyLen {
			return fmt.Errorf("%w: key of %d bytes exceeds %d", ErrInvalid, n, maxKVKeyLen)
		}
	}
	return nil
}
