// Package storage keeps partition logs and small metadata records on disk.
//
// Every partition of a broker shares one Store. Batches are stored as the
// bytes that arrived (offsets already assigned), so Fetch can serve them
// without re-encoding. All writes go through one group committer: whatever is
// pending is merged into one transaction and one sync, and each Write's Done
// runs only after the sync that covers it.
package storage

import (
	"encoding/binary"
)

// LogID names one partition's log inside a Store.
type LogID struct {
	Topic     [16]byte // topic ID
	Partition int32
}

// BatchMeta describes one stored record batch. It is kept beside the batch
// so that indexes can be rebuilt without reading batch bytes.
type BatchMeta struct {
	BaseOffset   int64
	LastOffset   int64
	MaxTimestamp int64
	Size         int32 // bytes of the batch
}

// Batch is a record batch to store.
type Batch struct {
	Log  LogID
	Meta BatchMeta
	Data []byte // the whole batch, base offset already written into it
}

// KV is a small metadata record. Keys are opaque to the store and live in
// their own namespace, apart from batches.
type KV struct {
	Key   []byte
	Value []byte // nil deletes the key
}

// BatchRef names one stored batch by its log and exact meta.
type BatchRef struct {
	Log  LogID
	Meta BatchMeta
}

// Write is one unit of group commit. The store never modifies Data or KV
// slices, and the caller must not modify them until Done is called.
type Write struct {
	// Remove deletes batches, before Batches are written: compaction
	// replaces a batch by removing it and writing its rewritten form.
	Remove  []BatchRef
	Batches []Batch
	KVs     []KV
	// Done is called exactly once, after the sync that covers this write (or
	// with the error that prevented it). It must be quick and must not block.
	// It runs on the committer goroutine, except for a Write submitted after
	// Close: then Submit calls Done with ErrClosed on the submitter's
	// goroutine before it returns. So a caller must not hold, across Submit,
	// a lock that its Done takes. A Write with no batches and no KVs is a
	// barrier: Done runs once every earlier Write is durable.
	Done func(error)
}

// Store is the storage of one broker. Implementations: Badger (durable) and
// Memory (tests).
type Store interface {
	// Submit queues w for the next group commit and returns without waiting
	// for it. Writes are applied and their Done callbacks run in submission
	// order, on the committer goroutine. After Close, Submit calls Done with
	// ErrClosed itself, on the caller's goroutine, before it returns: no lock
	// that Done takes may be held across Submit.
	Submit(w *Write)

	// Scan calls fn for each stored batch of log whose LastOffset >= from, in
	// offset order, until fn returns false. data is only valid during fn.
	Scan(log LogID, from int64, fn func(m BatchMeta, data []byte) bool) error

	// Index calls fn with the metadata of every stored batch of log, in
	// offset order, without reading batch bytes, until fn returns false.
	Index(log LogID, fn func(m BatchMeta) bool) error

	// DeleteBatches removes the batches of log whose LastOffset < before.
	DeleteBatches(log LogID, before int64) error

	// DropLog removes every batch of log.
	DropLog(log LogID) error

	// Get returns the value of a metadata key, or ErrNotFound.
	Get(key []byte) ([]byte, error)

	// Range calls fn for each metadata key with the given prefix, in key
	// order, until fn returns false. k and v are only valid during fn.
	Range(prefix []byte, fn func(k, v []byte) bool) error

	// KeyBounds returns the smallest and the largest metadata key with the
	// given prefix, without reading values; ok is false when there is none.
	KeyBounds(prefix []byte) (first, last []byte, ok bool, err error)

	// Reserve asks for room for n bytes of partition data about to be
	// written (record batches, a partition's Raft entries). It returns
	// ErrDiskFull, and counts nothing, if the store's filesystem would
	// fall below its free-space reserve; the caller must then not write.
	Reserve(n int) error

	// SpaceLow reports whether the last Reserve was refused.
	SpaceLow() bool

	// Failed is the error that failed the store (ErrFailed), or nil: once
	// a commit fails, Reserve refuses all partition data.
	Failed() error

	// Close stops the committer after the queued writes and releases the
	// store. It is safe to call more than once.
	Close() error
}

// AppendLogID appends a fixed-size binary form of id to dst, for building
// keys that belong to one log.
func AppendLogID(dst []byte, id LogID) []byte {
	dst = append(dst, id.Topic[:]...)
	return binary.BigEndian.AppendUint32(dst, uint32(id.Partition))
}

// WriteKVs submits metadata records to s and waits until they are durable.
func WriteKVs(s Store, kvs ...KV) error {
	return Commit(s, &Write{KVs: kvs})
}

// Commit submits w and waits until it is durable; w's Done is replaced.
func Commit(s Store, w *Write) error {
	errc := make(chan error, 1)
	w.Done = func(err error) { errc <- err }
	s.Submit(w)
	return <-errc
}
