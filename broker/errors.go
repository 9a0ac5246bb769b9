package broker

import (
	"errors"

	"github.com/pubg1/pubg1/broker/partition"
	"github.com/pubg1/pubg1/coordinator"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Errors of the broker package.
var (
	ErrInvalidConfig            = errors.New("invalid broker configuration")
	ErrUnknownTopic             = errors.New("unknown topic or partition")
	ErrUnknownTopicID           = errors.New("unknown topic ID")
	ErrTopicExists              = errors.New("topic already exists")
	ErrInvalidTopic             = errors.New("invalid topic name")
	ErrInvalidPartitions        = errors.New("invalid number of partitions")
	ErrInvalidReplication       = errors.New("invalid replication factor")
	ErrInvalidTopicConfig       = errors.New("invalid topic configuration")
	ErrInvalidReplicaAssignment = errors.New("invalid replica assignment")
	ErrInvalidRequest           = errors.New("invalid request")
	ErrMessageTooLarge          = errors.New("record batch larger than max.message.bytes")
	ErrClosed                   = errors.New("broker closed")
	// Fetch sessions (fetch_session.go).
	ErrFetchSessionNotFound     = errors.New("fetch session not found")
	ErrInvalidFetchSessionEpoch = errors.New("fetch session epoch is not the one expected")
	ErrFetchSessionTopicID      = errors.New("fetch session and request differ in naming topics by ID")
	ErrInconsistentTopicID      = errors.New("topic ID of a deleted topic whose name now has another ID")
)

// errorCode maps an error from the broker or the layers below it to the
// Kafka error code a client understands. It is the only place where that
// mapping is written down.
func errorCode(err error) int16 {
	var ke *kerr.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ke):
		return ke.Code
	case errors.Is(err, ErrUnknownTopic), errors.Is(err, partition.ErrClosed):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, ErrUnknownTopicID):
		return kerr.UnknownTopicID.Code
	case errors.Is(err, ErrInconsistentTopicID):
		return kerr.InconsistentTopicID.Code
	case errors.Is(err, ErrFetchSessionNotFound):
		return kerr.FetchSessionIDNotFound.Code
	case errors.Is(err, ErrInvalidFetchSessionEpoch):
		return kerr.InvalidFetchSessionEpoch.Code
	case errors.Is(err, ErrFetchSessionTopicID):
		return kerr.FetchSessionTopicIDError.Code
	case errors.Is(err, ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, ErrInvalidReplication):
		return kerr.InvalidReplicationFactor.Code
	case errors.Is(err, ErrInvalidReplicaAssignment):
		return kerr.InvalidReplicaAssignment.Code
	case errors.Is(err, ErrInvalidTopicConfig):
		return kerr.InvalidConfig.Code
	case errors.Is(err, ErrInvalidRequest):
		return kerr.InvalidRequest.Code
	case errors.Is(err, ErrMessageTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, partition.ErrCorruptBatch):
		return kerr.CorruptMessage.Code
	case errors.Is(err, partition.ErrInvalidRecord):
		return kerr.InvalidRecord.Code
	case errors.Is(err, partition.ErrOldMessageFormat):
		return kerr.UnsupportedForMessageFormat.Code
	case errors.Is(err, partition.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, partition.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, partition.ErrInvalidProducerEpoch):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, partition.ErrNotLeader):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, partition.ErrFencedLeaderEpoch):
		return kerr.FencedLeaderEpoch.Code
	case errors.Is(err, partition.ErrUnknownLeaderEpoch):
		return kerr.UnknownLeaderEpoch.Code
	case errors.Is(err, partition.ErrStorage):
		return kerr.KafkaStorageError.Code
	// Consumer groups.
	case errors.Is(err, coordinator.ErrNotCoordinator):
		return kerr.NotCoordinator.Code
	case errors.Is(err, coordinator.ErrLoadInProgress):
		return kerr.CoordinatorLoadInProgress.Code
	case errors.Is(err, coordinator.ErrCoordinatorNotAvailable):
		return kerr.CoordinatorNotAvailable.Code
	case errors.Is(err, coordinator.ErrInvalidGroupID):
		return kerr.InvalidGroupID.Code
	case errors.Is(err, coordinator.ErrUnknownMemberID):
		return kerr.UnknownMemberID.Code
	case errors.Is(err, coordinator.ErrMemberIDRequired):
		return kerr.MemberIDRequired.Code
	case errors.Is(err, coordinator.ErrIllegalGeneration):
		return kerr.IllegalGeneration.Code
	case errors.Is(err, coordinator.ErrRebalanceInProgress):
		return kerr.RebalanceInProgress.Code
	case errors.Is(err, coordinator.ErrFencedInstanceID):
		return kerr.FencedInstanceID.Code
	case errors.Is(err, coordinator.ErrInvalidSessionTimeout):
		return kerr.InvalidSessionTimeout.Code
	case errors.Is(err, coordinator.ErrInconsistentProtocol):
		return kerr.InconsistentGroupProtocol.Code
	case errors.Is(err, coordinator.ErrNonEmptyGroup):
		return kerr.NonEmptyGroup.Code
	case errors.Is(err, coordinator.ErrGroupIDNotFound):
		return kerr.GroupIDNotFound.Code
	case errors.Is(err, coordinator.ErrGroupSubscribedToTopic):
		return kerr.GroupSubscribedToTopic.Code
	case errors.Is(err, coordinator.ErrOffsetMetadataTooLarge):
		return kerr.OffsetMetadataTooLarge.Code
	default:
		return kerr.UnknownServerError.Code
	}
}

// errorMessage is the message for a response's ErrorMessage field: nil on
// success.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
