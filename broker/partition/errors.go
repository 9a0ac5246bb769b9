package partition

import "errors"

// Errors returned by partitions. The broker maps each to a Kafka error code
// in one place.
var (
	ErrCorruptBatch         = errors.New("corrupt record batch")
	ErrInvalidRecord        = errors.New("invalid record batch")
	ErrOldMessageFormat     = errors.New("message format v0/v1 is not supported, only v2 record batches")
	ErrOffsetOutOfRange     = errors.New("offset out of range")
	ErrOutOfOrderSequence   = errors.New("out of order sequence number")
	ErrInvalidProducerEpoch = errors.New("producer epoch is older than the current one")
	ErrStorage              = errors.New("partition storage failed")
	ErrClosed               = errors.New("partition closed")
	ErrNotLeader            = errors.New("not the leader of this partition")
	ErrFencedLeaderEpoch    = errors.New("leader epoch is older than the current one")
	ErrUnknownLeaderEpoch   = errors.New("leader epoch is newer than the current one")
	ErrReplicaUnreachable   = errors.New("the replica has not answered the leader lately")
	// ErrDamaged (wrapped with ErrStorage) is a stored batch that fails
	// its checksum or does not parse: the disk changed it.
	ErrDamaged = errors.New("stored record batch is damaged")
)
