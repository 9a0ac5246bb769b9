package partition

import "time"

// Remote stands for a partition this broker holds no replica of: every
// operation fails with ErrNotLeader, which tells clients to look up the
// leader again.
type Remote struct{}

var _ Partition = Remote{}

// Append implements Partition.
func (Remote) Append(_ []byte, _ BatchHeader, _ AppendOptions, done func(AppendResult)) {
	done(AppendResult{BaseOffset: -1, LogAppendTime: -1, Err: ErrNotLeader})
}

// Read implements Partition.
func (Remote) Read(int64, int, bool, []byte) (ReadResult, error) {
	return ReadResult{Offsets: Offsets{LogStart: -1, HighWatermark: -1, LogEnd: -1, LeaderEpoch: -1, LastStable: -1}}, ErrNotLeader
}

// ReadCommitted implements Partition.
func (r Remote) ReadCommitted(offset int64, maxBytes int, minOne bool, dst []byte) (ReadResult, error) {
	return r.Read(offset, maxBytes, minOne, dst)
}

// IsLeader implements Partition.
func (Remote) IsLeader() bool { return false }

// TxnOpen implements Partition.
func (Remote) TxnOpen(int64) bool { return false }

// Producers implements Partition.
func (Remote) Producers() []ProducerState { return nil }

// Offsets implements Partition.
func (Remote) Offsets() Offsets {
	return Offsets{LogStart: -1, HighWatermark: -1, LogEnd: -1, LeaderEpoch: -1}
}

// OffsetForTime implements Partition.
func (Remote) OffsetForTime(int64) (int64, int64, error) { return -1, -1, ErrNotLeader }

// MaxTimestamp implements Partition.
func (Remote) MaxTimestamp() (int64, int64, error) { return -1, -1, ErrNotLeader }

// EndOffsetForEpoch implements Partition.
func (Remote) EndOffsetForEpoch(int32) (int32, int64) { return -1, -1 }

// Watch implements Partition.
func (Remote) Watch(chan<- struct{}) {}

// Unwatch implements Partition.
func (Remote) Unwatch(chan<- struct{}) {}

// Compact implements Partition.
func (Remote) Compact(time.Time, CompactOptions) (CompactResult, error) { return CompactResult{}, nil }

// EnforceRetention implements Partition.
func (Remote) EnforceRetention(time.Time, time.Duration, int64) (int64, error) { return -1, nil }

// SetLogStart implements Partition.
func (Remote) SetLogStart(int64) error { return ErrNotLeader }

// Size implements Partition.
func (Remote) Size() int64 { return 0 }

// Close implements Partition.
func (Remote) Close() error { return nil }

// Delete implements Partition.
func (Remote) Delete() error { return nil }
