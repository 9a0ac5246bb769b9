// Package partition holds partition logs: offsets, idempotent producer
// state, the high watermark and waiting readers. Handlers use the Partition
// interface, so a single-node log and a replicated one are interchangeable.
package partition

import (
	"fmt"
	"time"
)

// Acks is the acknowledgement level of a Produce request.
type Acks int16

// Acknowledgement levels as Kafka defines them.
const (
	AcksNone   Acks = 0
	AcksLeader Acks = 1
	AcksAll    Acks = -1
)

// AppendOptions are the per-append settings, taken from the request and the
// topic's configuration at the time of the append.
type AppendOptions struct {
	Acks          Acks
	LogAppendTime bool // message.timestamp.type=LogAppendTime
}

// AppendResult is the outcome of one append.
type AppendResult struct {
	BaseOffset     int64
	LogAppendTime  int64 // -1 unless the topic uses LogAppendTime
	LogStartOffset int64
	Err            error
}

// Offsets is a consistent view of a partition's offsets.
type Offsets struct {
	LogStart      int64
	HighWatermark int64 // first offset not yet committed; readers see below it
	LogEnd        int64 // next offset to be assigned
	LeaderEpoch   int32
	// LastStable is the first offset of the oldest open transaction, or the
	// high watermark: read_committed readers see below it.
	LastStable int64
}

// ProducerState is one producer of a partition as DescribeProducers shows
// it.
type ProducerState struct {
	ID             int64
	Epoch          int16
	LastSequence   int32 // -1 if none
	TxnStartOffset int64 // first offset of its open transaction, or -1
}

// ReadResult is what Read returns.
type ReadResult struct {
	Offsets
	Records []byte // whole record batches, as stored
	// Aborted is, for ReadCommitted, the aborted transactions the records
	// read may hold batches of, by marker offset.
	Aborted []AbortedTxn
}

// Partition is one partition's log as handlers see it.
type Partition interface {
	// Append appends one record batch that passed CheckProduced. b is
	// modified in place (base offset, leader epoch, append time) and kept
	// until done is called. done is called exactly once, when the append is
	// durable at the requested acks level or has failed; it must not block.
	Append(b []byte, h BatchHeader, opts AppendOptions, done func(AppendResult))

	// Read appends to dst the committed batches from the one holding offset
	// on, stopping before maxBytes would be exceeded, but always returning
	// one whole batch if any is available and minOne is set (so a batch
	// larger than the limit still makes progress).
	Read(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error)

	// ReadCommitted is Read for a read_committed consumer: it stops at the
	// last stable offset and lists the aborted transactions the batches
	// read may belong to.
	ReadCommitted(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error)

	// IsLeader reports whether this replica leads the partition and so
	// serves clients.
	IsLeader() bool

	// TxnOpen reports whether producer pid has a transaction open in this
	// leader's log, its appends not yet committed included.
	TxnOpen(pid int64) bool

	// Producers lists the producers this leader keeps state for
	// (DescribeProducers), by ID.
	Producers() []ProducerState

	// Offsets returns the current offsets.
	Offsets() Offsets

	// OffsetForTime returns the first committed offset whose record
	// timestamp is at or after ts, and that timestamp; offset -1 when there
	// is none.
	OffsetForTime(ts int64) (offset, timestamp int64, err error)

	// MaxTimestamp returns the offset and timestamp of the committed record
	// with the largest timestamp (the first such); offset -1 when empty.
	MaxTimestamp() (offset, timestamp int64, err error)

	// EndOffsetForEpoch answers OffsetForLeaderEpoch: the largest epoch <=
	// epoch that this log has, and the offset where it ended.
	EndOffsetForEpoch(epoch int32) (leaderEpoch int32, endOffset int64)

	// Watch registers ch to receive a non-blocking signal whenever the high
	// watermark advances; Unwatch removes it.
	Watch(ch chan<- struct{})
	Unwatch(ch chan<- struct{})

	// EnforceRetention deletes whole batches from the front of the log while
	// they are older than retention (by max timestamp) or while the log is
	// larger than retentionBytes; a negative limit disables it. It returns
	// the new log start offset.
	EnforceRetention(now time.Time, retention time.Duration, retentionBytes int64) (int64, error)

	// Compact applies log compaction (cleanup.policy=compact) to the
	// committed log of this replica when enough of it is dirty.
	Compact(now time.Time, o CompactOptions) (CompactResult, error)

	// SetLogStart advances the log start offset (DeleteRecords); an offset
	// past the high watermark fails with ErrOffsetOutOfRange.
	SetLogStart(offset int64) error

	// Size is the number of bytes of committed batches kept.
	Size() int64

	// Close releases the partition; later calls fail with ErrClosed.
	Close() error

	// Delete closes the partition and removes its data.
	Delete() error
}

// retentionDrop counts the leading batches (or entries) to delete: while
// they are older than retention by their newest timestamp, or while the
// rest is larger than retentionBytes; a negative limit disables its rule.
// Kafka applies the same two rules to whole segments.
func retentionDrop(n int, size func(i int) int64, maxTS func(i int) int64, now time.Time, retention time.Duration, retentionBytes int64) int {
	var total int64
	for i := 0; i < n; i++ {
		total += size(i)
	}
	excess := total - retentionBytes
	cutoff := now.Add(-retention).UnixMilli()
	drop := 0
	for ; drop < n; drop++ {
		byTime := retention >= 0 && maxTS(drop) < cutoff
		bySize := retentionBytes >= 0 && excess >= size(drop)
		if !byTime && !bySize {
			break
		}
		excess -= size(drop)
	}
	return drop
}

// readRange checks a read from offset against a partition's offsets: an
// offset outside the log is out of range; at or past the high watermark
// there is nothing to read yet.
func readRange(offset int64, off Offsets) (empty bool, err error) {
	if offset < off.LogStart || offset > off.LogEnd {
		return false, fmt.Errorf("%w: %d is outside [%d, %d]", ErrOffsetOutOfRange, offset, off.LogStart, off.LogEnd)
	}
	return offset >= off.HighWatermark, nil
}
