package coordinator

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// Errors of the coordinator. The broker maps each to the Kafka error code of
// the same meaning in one place (broker/errors.go).
var (
	ErrInvalidConfig           = errors.New("invalid coordinator configuration")
	ErrNotCoordinator          = errors.New("this broker is not the coordinator of the group")
	ErrLoadInProgress          = errors.New("the group's offsets partition is still loading")
	ErrCoordinatorNotAvailable = errors.New("the group coordinator is not available")
	ErrInvalidGroupID          = errors.New("invalid group ID")
	ErrUnknownMemberID         = errors.New("unknown member ID")
	ErrMemberIDRequired        = errors.New("a member ID is required: join again with the member ID given")
	ErrIllegalGeneration       = errors.New("illegal generation")
	ErrRebalanceInProgress     = errors.New("the group is rebalancing")
	ErrFencedInstanceID        = errors.New("the static member's instance ID is used by a newer member")
	ErrInvalidSessionTimeout   = errors.New("session timeout outside the allowed range")
	ErrInconsistentProtocol    = errors.New("the member's protocol type or protocols do not match the group's")
	ErrNonEmptyGroup           = errors.New("the group has members")
	ErrGroupIDNotFound         = errors.New("group not found")
	ErrGroupSubscribedToTopic  = errors.New("the group's members are subscribed to the topic")
	ErrOffsetMetadataTooLarge  = errors.New("offset metadata larger than the maximum")
	// ErrUnstableOffsetCommit is a partition whose offset a transaction
	// has committed but not yet ended (OffsetFetch with RequireStable).
	ErrUnstableOffsetCommit = kerr.UnstableOffsetCommit
)

// errNoGroup is what routing reports for a group that does not exist when
// the request must not create it; each request answers it in its own way.
var errNoGroup = errors.New("no such group")
