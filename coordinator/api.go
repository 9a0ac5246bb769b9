package coordinator

import (
	"slices"
	"strings"
	"time"
)

// Protocol is one assignment protocol a joining member supports, with the
// member's metadata for it (for consumers, its subscription).
type Protocol struct {
	Name     string
	Metadata []byte
}

// JoinRequest is a JoinGroup request.
type JoinRequest struct {
	Group      string
	MemberID   string // "" on a member's first join
	InstanceID *string
	ClientID   string
	ClientHost string

	SessionTimeout   time.Duration
	RebalanceTimeout time.Duration
	ProtocolType     string
	Protocols        []Protocol
	// RequireKnownMemberID answers a dynamic member's first join with
	// MEMBER_ID_REQUIRED and a member ID to join with (JoinGroup v4+).
	RequireKnownMemberID bool
	// SkipAssignmentAllowed lets a rejoining static leader of a stable group
	// be told to skip the assignment (JoinGroup v9+).
	SkipAssignmentAllowed bool
	Reason                string
}

// JoinMember is a member as the group leader learns it from JoinGroup.
type JoinMember struct {
	MemberID   string
	InstanceID *string
	Metadata   []byte
}

// JoinResult answers a JoinGroup.
type JoinResult struct {
	Err            error
	MemberID       string
	Generation     int32
	ProtocolType   *string
	Protocol       *string
	Leader         string
	SkipAssignment bool
	Members        []JoinMember // only for the leader
}

// SyncRequest is a SyncGroup request. Assignments is set by the leader only.
type SyncRequest struct {
	Group        string
	Generation   int32
	MemberID     string
	InstanceID   *string
	ProtocolType *string
	Protocol     *string
	Assignments  map[string][]byte
}

// SyncResult answers a SyncGroup.
type SyncResult struct {
	Err          error
	ProtocolType *string
	Protocol     *string
	Assignment   []byte
}

// HeartbeatRequest is a Heartbeat request.
type HeartbeatRequest struct {
	Group      string
	Generation int32
	MemberID   string
	InstanceID *string
}

// MemberIdentity names a member leaving a group: by member ID, or by
// instance ID alone (an administrator removing a static member).
type MemberIdentity struct {
	MemberID   string
	InstanceID *string
	Reason     string
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// CommitOffset is one partition of an OffsetCommit.
type CommitOffset struct {
	TopicPartition
	Offset      int64
	LeaderEpoch int32
	Metadata    *string
}

// CommitRequest is an OffsetCommit request. Generation -1 with no member is
// a commit from outside group management (a standalone consumer or an
// administrator), accepted while the group has no members.
type CommitRequest struct {
	Group      string
	Generation int32
	MemberID   string
	InstanceID *string
	// Retention, if positive, makes the offsets expire that long after the
	// commit whatever the group does (OffsetCommit v2-v4).
	Retention time.Duration
	Offsets   []CommitOffset
}

// TopicPartitions names some partitions of a topic.
type TopicPartitions struct {
	Topic      string
	Partitions []int32
}

// PartitionOffset is a committed offset as OffsetFetch returns it: offset -1
// with metadata "" when nothing is committed.
type PartitionOffset struct {
	Partition   int32
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	Err         error
}

// TopicOffsets are the committed offsets of some partitions of a topic.
type TopicOffsets struct {
	Topic      string
	Partitions []PartitionOffset
}

// GroupOverview is a group as ListGroups shows it.
type GroupOverview struct {
	Group        string
	ProtocolType string
	State        string
}

// MemberDescription is a member as DescribeGroups shows it; metadata and
// assignment only while the group is stable.
type MemberDescription struct {
	MemberID   string
	InstanceID *string
	ClientID   string
	ClientHost string
	Metadata   []byte
	Assignment []byte
}

// GroupDescription is a group as DescribeGroups shows it.
type GroupDescription struct {
	Group        string
	State        string
	ProtocolType string
	Protocol     string
	Members      []MemberDescription
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// validGroupID applies Kafka's rule: the group management APIs need a
// non-empty group ID.
func validGroupID(id string) error {
	if id == "" {
		return ErrInvalidGroupID
	}
	return nil
}

// JoinGroup joins a member to a group, creating the group if needed. done is
// called once, possibly much later (when the rebalance completes); it must
// not block or call the coordinator.
func (c *Coordinator) JoinGroup(req JoinRequest, done func(JoinResult)) {
	fail := func(err error) { done(JoinResult{Err: err, MemberID: req.MemberID, Generation: -1}) }
	if err := validGroupID(req.Group); err != nil {
		fail(err)
		return
	}
	if req.SessionTimeout < c.cfg.MinSessionTimeout || req.SessionTimeout > c.cfg.MaxSessionTimeout {
		fail(ErrInvalidSessionTimeout)
		return
	}
	c.do(req.Group, req.MemberID == "", func(g *group) { g.join(req, done, time.Now()) }, func(err error) {
		if err == errNoGroup {
			// A member ID for a group that does not exist: the member
			// must start over.
			err = ErrUnknownMemberID
		}
		fail(err)
	})
}

// SyncGroup completes a member's part of a rebalance: the leader hands in
// the assignment, every member receives its own. done may be called later.
func (c *Coordinator) SyncGroup(req SyncRequest, done func(SyncResult)) {
	if err := validGroupID(req.Group); err != nil {
		done(SyncResult{Err: err})
		return
	}
	c.do(req.Group, false, func(g *group) { g.sync(req, done, time.Now()) }, func(err error) {
		switch err {
		case errNoGroup:
			err = ErrUnknownMemberID
		case ErrLoadInProgress:
			// The rebalance state was lost with the old coordinator:
			// older clients only know to rejoin on this.
			err = ErrRebalanceInProgress
		}
		done(SyncResult{Err: err})
	})
}

// Heartbeat keeps a member's session alive and tells it about rebalances.
func (c *Coordinator) Heartbeat(req HeartbeatRequest, done func(error)) {
	if err := validGroupID(req.Group); err != nil {
		done(err)
		return
	}
	c.do(req.Group, false, func(g *group) { done(g.heartbeat(req, time.Now())) }, func(err error) {
		switch err {
		case errNoGroup:
			err = ErrUnknownMemberID
		case ErrLoadInProgress:
			err = nil // as Kafka: answer blindly while loading
		}
		done(err)
	})
}

// LeaveGroup removes members from a group. done gets a group-level error, or
// one error per member.
func (c *Coordinator) LeaveGroup(groupID string, members []MemberIdentity, done func(err error, memberErrs []error)) {
	if err := validGroupID(groupID); err != nil {
		done(err, nil)
		return
	}
	c.do(groupID, false, func(g *group) { done(nil, g.leave(members, time.Now())) }, func(err error) {
		if err != errNoGroup {
			done(err, nil)
			return
		}
		errs := make([]error, len(members))
		for i := range errs {
			errs[i] = ErrUnknownMemberID
		}
		done(nil, errs)
	})
}

// CommitOffsets commits offsets once they are durable. done gets one error
// per offset of the request, in order.
func (c *Coordinator) CommitOffsets(req CommitRequest, done func(errs []error)) {
	create := req.Generation < 0
	c.do(req.Group, create, func(g *group) { g.commit(req, done, time.Now()) }, func(err error) {
		if err == errNoGroup {
			// A commit with a generation for a group that does not
			// exist; the broker reports ILLEGAL_GENERATION before
			// OffsetCommit v9.
			err = ErrGroupIDNotFound
		}
		done(errsOf(len(req.Offsets), err))
	})
}

// FetchOffsets returns a group's committed offsets of the given partitions,
// or of every partition with a commit when topics is nil. With requireStable
// it waits for commits in flight first.
func (c *Coordinator) FetchOffsets(groupID string, topics []TopicPartitions, requireStable bool, done func([]TopicOffsets, error)) {
	c.do(groupID, false, func(g *group) { g.fetchOffsets(topics, requireStable, done) }, func(err error) {
		if err != errNoGroup {
			done(nil, err)
			return
		}
		done(unknownOffsets(topics), nil)
	})
}

// unknownOffsets answers offset -1 for every requested partition.
func unknownOffsets(topics []TopicPartitions) []TopicOffsets {
	out := make([]TopicOffsets, 0, len(topics))
	for _, t := range topics {
		to := TopicOffsets{Topic: t.Topic}
		for _, p := range t.Partitions {
			to.Partitions = append(to.Partitions, PartitionOffset{Partition: p, Offset: -1, LeaderEpoch: -1})
		}
		out = append(out, to)
	}
	return out
}

// DescribeGroup describes a group; ErrGroupIDNotFound if it does not exist.
func (c *Coordinator) DescribeGroup(groupID string, done func(GroupDescription, error)) {
	c.do(groupID, false, func(g *group) { done(g.describe(), nil) }, func(err error) {
		if err == errNoGroup {
			err = ErrGroupIDNotFound
		}
		done(GroupDescription{Group: groupID}, err)
	})
}

// ListGroups lists the groups of the partitions this coordinator leads,
// whose state (as Kafka names it, case-insensitively) is in states and whose
// type is in types, when those are not empty. It fails with
// ErrLoadInProgress while a partition is loading.
func (c *Coordinator) ListGroups(states, types []string) ([]GroupOverview, error) {
	groups, loading := c.groupsOf()
	if loading {
		return nil, ErrLoadInProgress
	}
	lower := func(ss []string) []string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = strings.ToLower(s)
		}
		return out
	}
	states, types = lower(states), lower(types)
	var out []GroupOverview
	for _, g := range groups {
		v := g.view.Load()
		if v == nil || v.State == StateDead.String() {
			continue
		}
		if len(states) > 0 && !slices.Contains(states, strings.ToLower(v.State)) {
			continue
		}
		if len(types) > 0 && !slices.Contains(types, GroupType) {
			continue
		}
		out = append(out, *v)
	}
	return out, nil
}

// GroupType is the type of every group here: the classic protocol.
const GroupType = "classic"

// DeleteGroup deletes an empty group and its offsets, answering once the
// deletion is durable.
func (c *Coordinator) DeleteGroup(groupID string, done func(error)) {
	c.do(groupID, false, func(g *group) { g.deleteGroup(done, time.Now()) }, func(err error) {
		if err == errNoGroup {
			err = ErrGroupIDNotFound
		}
		done(err)
	})
}

// DeleteOffsets deletes some committed offsets of a group. done gets a
// group-level error, or one error per partition, in order.
func (c *Coordinator) DeleteOffsets(groupID string, partitions []TopicPartition, done func(err error, errs []error)) {
	if err := validGroupID(groupID); err != nil {
		done(err, nil)
		return
	}
	c.do(groupID, false, func(g *group) { g.deleteOffsets(partitions, done, time.Now()) }, func(err error) {
		if err == errNoGroup {
			err = ErrGroupIDNotFound
		}
		done(err, nil)
	})
}

// TopicDeleted removes every group's offsets of a deleted topic, as Kafka
// does, so that a new topic of the same name starts without them.
func (c *Coordinator) TopicDeleted(topic string) {
	c.broadcast(func(g *group) { g.removeTopic(topic, time.Now()) })
}
