package broker_test

import (
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// groupBroker starts a broker whose groups rebalance without the initial
// delay and accept short sessions, so that tests run quickly.
func groupBroker(t testing.TB, opts ...brokertest.Option) *broker.Broker {
	t.Helper()
	base := brokertest.WithConfig(func(c *broker.Config) {
		c.GroupInitialRebalanceDelay = 0
		c.GroupMinSessionTimeout = 100 * time.Millisecond
		c.OffsetsTopicPartitions = 5
	})
	return runBroker(t, append([]brokertest.Option{base}, opts...)...)
}

// subscription is a consumer protocol subscription (version 0) to topics.
func subscription(topics ...string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

// joinReq builds a JoinGroup request with one protocol per name, each with a
// subscription to topics.
func joinReq(version int16, group, memberID string, instanceID *string, session time.Duration, protocols []string, topics ...string) *kmsg.JoinGroupRequest {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = version
	req.Group, req.MemberID, req.InstanceID = group, memberID, instanceID
	req.SessionTimeoutMillis = int32(session.Milliseconds())
	req.RebalanceTimeoutMillis = int32((5 * time.Second).Milliseconds())
	req.ProtocolType = "consumer"
	for _, p := range protocols {
		jp := kmsg.NewJoinGroupRequestProtocol()
		jp.Name, jp.Metadata = p, subscription(topics...)
		req.Protocols = append(req.Protocols, jp)
	}
	return req
}

// joined is a member after a successful JoinGroup.
type joined struct {
	c          *ktest.Conn
	group      string
	memberID   string
	instanceID *string
	generation int32
	leader     string
	members    []kmsg.JoinGroupResponseMember
	protocol   string
}

// join joins group on c with JoinGroup v9, answering MEMBER_ID_REQUIRED
// as clients do, and fails the test on any other error.
func join(t testing.TB, c *ktest.Conn, group string, topics ...string) *joined {
	t.Helper()
	resp := c.Do(joinReq(9, group, "", nil, 10*time.Second, []string{"range"}, topics...)).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("first join: error %d, want MEMBER_ID_REQUIRED", resp.ErrorCode)
	}
	resp = c.Do(joinReq(9, group, resp.MemberID, nil, 10*time.Second, []string{"range"}, topics...)).(*kmsg.JoinGroupResponse)
	return checkJoined(t, c, group, nil, resp)
}

func checkJoined(t testing.TB, c *ktest.Conn, group string, instanceID *string, resp *kmsg.JoinGroupResponse) *joined {
	t.Helper()
	if resp.ErrorCode != 0 {
		t.Fatalf("join %s: error %d", group, resp.ErrorCode)
	}
	return &joined{c: c, group: group, memberID: resp.MemberID, instanceID: instanceID, generation: resp.Generation,
		leader: resp.LeaderID, members: resp.Members, protocol: deref(resp.Protocol)}
}

// syncReq builds a SyncGroup v5 request of m; the leader passes
// assignments.
func (m *joined) syncReq(assignments map[string][]byte) *kmsg.SyncGroupRequest {
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group, req.Generation, req.MemberID, req.InstanceID = m.group, m.generation, m.memberID, m.instanceID
	req.ProtocolType, req.Protocol = ptr("consumer"), ptr(m.protocol)
	for id, a := range assignments {
		ga := kmsg.NewSyncGroupRequestGroupAssignment()
		ga.MemberID, ga.MemberAssignment = id, a
		req.GroupAssignment = append(req.GroupAssignment, ga)
	}
	return req
}

// sync sends m's SyncGroup and returns its answer.
func (m *joined) sync(t testing.TB, assignments map[string][]byte) *kmsg.SyncGroupResponse {
	t.Helper()
	return m.c.Do(m.syncReq(assignments)).(*kmsg.SyncGroupResponse)
}

// heartbeat sends m's Heartbeat v4 and returns its error code.
func (m *joined) heartbeat(t testing.TB) int16 {
	t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group, req.Generation, req.MemberID, req.InstanceID = m.group, m.generation, m.memberID, m.instanceID
	return m.c.Do(req).(*kmsg.HeartbeatResponse).ErrorCode
}

// commitReq builds an OffsetCommit request for one partition.
func commitReq(version int16, group string, generation int32, memberID, topic string, partition int32, offset int64, metadata *string) *kmsg.OffsetCommitRequest {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = version
	req.Group, req.Generation, req.MemberID = group, generation, memberID
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.Metadata = partition, offset, metadata
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	return req
}

// commit commits one offset with OffsetCommit v8 and returns the
// partition's error code.
func commit(t testing.TB, c *ktest.Conn, group string, generation int32, memberID, topic string, partition int32, offset int64) int16 {
	t.Helper()
	return commitCode(t, c.Do(commitReq(8, group, generation, memberID, topic, partition, offset, nil)).(*kmsg.OffsetCommitResponse))
}

func commitCode(t testing.TB, resp *kmsg.OffsetCommitResponse) int16 {
	t.Helper()
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("offset commit answered %+v", resp.Topics)
	}
	return resp.Topics[0].Partitions[0].ErrorCode
}

// fetchOffset asks OffsetFetch v7 for one partition's committed offset.
func fetchOffset(t testing.TB, c *ktest.Conn, group, topic string, partition int32) (int64, int16) {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 7
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{partition}
	req.Topics = append(req.Topics, rt)
	resp := c.Do(req).(*kmsg.OffsetFetchResponse)
	if resp.ErrorCode != 0 {
		return -1, resp.ErrorCode
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("offset fetch answered %+v", resp.Topics)
	}
	p := resp.Topics[0].Partitions[0]
	return p.Offset, p.ErrorCode
}

// describeGroup describes one group with DescribeGroups v5.
func describeGroup(t testing.TB, c *ktest.Conn, group string) kmsg.DescribeGroupsResponseGroup {
	t.Helper()
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Version = 5
	req.Groups = []string{group}
	resp := c.Do(req).(*kmsg.DescribeGroupsResponse)
	if len(resp.Groups) != 1 {
		t.Fatalf("describe groups answered %d groups", len(resp.Groups))
	}
	return resp.Groups[0]
}

// errName names a Kafka error code for messages.
func errName(code int16) string {
	if err := kerr.ErrorForCode(code); err != nil {
		return err.Error()
	}
	return "NONE"
}
