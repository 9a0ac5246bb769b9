package broker_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pubg1/pubg1/broker"
	"github.com/pubg1/pubg1/broker/brokertest"
	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestFindCoordinator(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	host, portStr, _ := strings.Cut(b.Addr(), ":")
	port, _ := strconv.Atoi(portStr)
	for v := int16(0); v <= 3; v++ {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version, req.CoordinatorKey = v, "g"
		resp := c.Do(req).(*kmsg.FindCoordinatorResponse)
		if resp.ErrorCode != 0 || resp.NodeID != 1 || resp.Host != host || resp.Port != int32(port) {
			t.Errorf("v%d: error %d, coordinator %d at %s:%d, want 1 at %s", v, resp.ErrorCode, resp.NodeID, resp.Host, resp.Port, b.Addr())
		}
	}
	for v := int16(4); v <= 6; v++ {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version, req.CoordinatorKeys = v, []string{"a", "b", ""}
		resp := c.Do(req).(*kmsg.FindCoordinatorResponse)
		if len(resp.Coordinators) != 3 {
			t.Fatalf("v%d: %d coordinators for 3 keys", v, len(resp.Coordinators))
		}
		for i, co := range resp.Coordinators {
			if co.Key != req.CoordinatorKeys[i] || co.ErrorCode != 0 || co.NodeID != 1 || co.Host != host || co.Port != int32(port) {
				t.Errorf("v%d key %q: %+v", v, req.CoordinatorKeys[i], co)
			}
		}
	}
	// A transactional ID's coordinator: __transaction_state is created
	// on the first look-up, which may answer COORDINATOR_NOT_AVAILABLE.
	findTxnCoordinator(t, c, "x", 1)
	for _, tc := range []struct {
		keyType int8
		want    int16
	}{{2, kerr.CoordinatorNotAvailable.Code}, {7, kerr.InvalidRequest.Code}} {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version, req.CoordinatorType, req.CoordinatorKeys = 4, tc.keyType, []string{"x"}
		resp := c.Do(req).(*kmsg.FindCoordinatorResponse)
		if len(resp.Coordinators) != 1 || resp.Coordinators[0].ErrorCode != tc.want || resp.Coordinators[0].NodeID != -1 {
			t.Errorf("key type %d: %+v, want error %s", tc.keyType, resp.Coordinators, errName(tc.want))
		}
	}
}

// findTxnCoordinator looks up the coordinator of a transactional ID until
// there is one, and checks that it is broker want.
func findTxnCoordinator(t *testing.T, c *ktest.Conn, id string, want int32) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.Version, req.CoordinatorType, req.CoordinatorKeys = 4, 1, []string{id}
		resp := c.Do(req).(*kmsg.FindCoordinatorResponse)
		co := resp.Coordinators[0]
		if co.ErrorCode == 0 {
			if co.NodeID != want {
				t.Fatalf("coordinator of %q: broker %d, want %d", id, co.NodeID, want)
			}
			return
		}
		if co.ErrorCode != kerr.CoordinatorNotAvailable.Code || time.Now().After(deadline) {
			t.Fatalf("coordinator of %q: %+v", id, co)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestJoinGroupMemberIDRequired(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	const group = "required"
	resp := c.Do(joinReq(4, group, "", nil, 10*time.Second, []string{"range"}, "t")).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != kerr.MemberIDRequired.Code || !strings.HasPrefix(resp.MemberID, "pubg1-broker-test-") || resp.Generation != -1 {
		t.Fatalf("first join v4: error %s, member %q, generation %d; want MEMBER_ID_REQUIRED with a member ID", errName(resp.ErrorCode), resp.MemberID, resp.Generation)
	}
	m := checkJoined(t, c, group, nil, c.Do(joinReq(4, group, resp.MemberID, nil, 10*time.Second, []string{"range"}, "t")).(*kmsg.JoinGroupResponse))
	if m.memberID != resp.MemberID || m.generation != 1 || m.leader != m.memberID || len(m.members) != 1 || m.protocol != "range" {
		t.Fatalf("second join: %+v", m)
	}
	// Before v4 the first join is accepted at once.
	c2 := dial(t, b)
	resp = c2.Do(joinReq(3, "old-client", "", nil, 10*time.Second, []string{"range"}, "t")).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != 0 || resp.MemberID == "" || resp.Generation != 1 {
		t.Fatalf("join v3: error %s, member %q, generation %d", errName(resp.ErrorCode), resp.MemberID, resp.Generation)
	}
}

func TestJoinGroupErrors(t *testing.T) {
	b := groupBroker(t, brokertest.WithConfig(func(c *broker.Config) {
		c.GroupMinSessionTimeout, c.GroupMaxSessionTimeout = time.Second, time.Minute
	}))
	c := dial(t, b)
	for _, session := range []time.Duration{999 * time.Millisecond, time.Minute + time.Millisecond} {
		resp := c.Do(joinReq(9, "g", "", nil, session, []string{"range"})).(*kmsg.JoinGroupResponse)
		if resp.ErrorCode != kerr.InvalidSessionTimeout.Code {
			t.Errorf("session %v: error %s, want INVALID_SESSION_TIMEOUT", session, errName(resp.ErrorCode))
		}
	}
	resp := c.Do(joinReq(9, "", "", nil, 10*time.Second, []string{"range"})).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != kerr.InvalidGroupID.Code {
		t.Errorf("empty group ID: error %s, want INVALID_GROUP_ID", errName(resp.ErrorCode))
	}
	resp = c.Do(joinReq(9, "nogroup", "someone", nil, 10*time.Second, []string{"range"})).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("member ID for a group that does not exist: error %s, want UNKNOWN_MEMBER_ID", errName(resp.ErrorCode))
	}
	resp = c.Do(joinReq(9, "noprotocols", "", nil, 10*time.Second, nil)).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("join without protocols: error %s, want INCONSISTENT_GROUP_PROTOCOL", errName(resp.ErrorCode))
	}

	join(t, c, "proto", "t")
	c2 := dial(t, b)
	resp = c2.Do(joinReq(9, "proto", "", nil, 10*time.Second, []string{"roundrobin"})).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("join with no protocol in common: error %s, want INCONSISTENT_GROUP_PROTOCOL", errName(resp.ErrorCode))
	}
	other := joinReq(9, "proto", "", nil, 10*time.Second, []string{"range"})
	other.ProtocolType = "connect"
	if resp = c2.Do(other).(*kmsg.JoinGroupResponse); resp.ErrorCode != kerr.InconsistentGroupProtocol.Code {
		t.Errorf("join with another protocol type: error %s, want INCONSISTENT_GROUP_PROTOCOL", errName(resp.ErrorCode))
	}
}

// TestGroupRebalance runs a group through two generations with raw
// requests: join, sync, heartbeats, a second member triggering a rebalance,
// and the fencing of stale generations.
func TestGroupRebalance(t *testing.T) {
	b := groupBroker(t)
	const group = "rebalance"
	createTopic(t, dial(t, b), "t", 1)
	a := join(t, dial(t, b), group, "t")
	if a.generation != 1 || a.leader != a.memberID {
		t.Fatalf("first member: generation %d, leader %q", a.generation, a.leader)
	}
	sresp := a.sync(t, map[string][]byte{a.memberID: []byte("all of it")})
	if sresp.ErrorCode != 0 || string(sresp.MemberAssignment) != "all of it" || deref(sresp.Protocol) != "range" || deref(sresp.ProtocolType) != "consumer" {
		t.Fatalf("leader sync: error %s, assignment %q, protocol %s/%s", errName(sresp.ErrorCode), sresp.MemberAssignment, deref(sresp.ProtocolType), deref(sresp.Protocol))
	}
	if code := a.heartbeat(t); code != 0 {
		t.Fatalf("heartbeat: %s", errName(code))
	}
	if d := describeGroup(t, a.c, group); d.State != "Stable" || len(d.Members) != 1 || string(d.Members[0].MemberAssignment) != "all of it" || d.Protocol != "range" {
		t.Fatalf("described %+v", d)
	}

	// A second member joins: its JoinGroup waits while the first learns of
	// the rebalance from its heartbeat and joins again.
	cb := dial(t, b)
	resp := cb.Do(joinReq(9, group, "", nil, 10*time.Second, []string{"range"}, "t")).(*kmsg.JoinGroupResponse)
	if resp.ErrorCode != kerr.MemberIDRequired.Code {
		t.Fatalf("second member's first join: %s", errName(resp.ErrorCode))
	}
	bID := resp.MemberID
	corr := cb.Send(joinReq(9, group, bID, nil, 10*time.Second, []string{"range"}, "t"))
	ktest.Eventually(t, "the first member to hear of the rebalance", func() bool {
		code := a.heartbeat(t)
		if code != 0 && code != kerr.RebalanceInProgress.Code {
			t.Fatalf("heartbeat during rebalance: %s", errName(code))
		}
		return code == kerr.RebalanceInProgress.Code
	})
	if code := commit(t, a.c, group, a.generation, a.memberID, "t", 0, 5); code != 0 {
		t.Fatalf("commit while preparing the rebalance: %s, want it accepted", errName(code))
	}
	if s := a.sync(t, nil); s.ErrorCode != kerr.RebalanceInProgress.Code {
		t.Fatalf("sync of the old generation during the rebalance: %s", errName(s.ErrorCode))
	}
	a2 := checkJoined(t, a.c, group, nil, a.c.Do(joinReq(9, group, a.memberID, nil, 10*time.Second, []string{"range"}, "t")).(*kmsg.JoinGroupResponse))
	bResp := kmsg.NewPtrJoinGroupResponse()
	bResp.Version = 9
	if got := cb.Recv(bResp); got != corr {
		t.Fatalf("correlation %d, want %d", got, corr)
	}
	b2 := checkJoined(t, cb, group, nil, bResp)
	if a2.generation != 2 || b2.generation != 2 || a2.leader != a.memberID || b2.leader != a.memberID {
		t.Fatalf("generation %d/%d, leaders %q/%q; want 2 led by %q", a2.generation, b2.generation, a2.leader, b2.leader, a.memberID)
	}
	if len(a2.members) != 2 || len(b2.members) != 0 {
		t.Fatalf("leader got %d members, follower %d; want 2 and 0", len(a2.members), len(b2.members))
	}

	// The old generation is fenced.
	if code := a.heartbeat(t); code != kerr.IllegalGeneration.Code {
		t.Errorf("heartbeat of generation 1: %s, want ILLEGAL_GENERATION", errName(code))
	}
	if code := commit(t, a.c, group, 1, a.memberID, "t", 0, 6); code != kerr.IllegalGeneration.Code {
		t.Errorf("commit of generation 1: %s, want ILLEGAL_GENERATION", errName(code))
	}
	// Members of generation 2 have not synced: commits must wait.
	if code := commit(t, a.c, group, 2, a.memberID, "t", 0, 6); code != kerr.RebalanceInProgress.Code {
		t.Errorf("commit before sync: %s, want REBALANCE_IN_PROGRESS", errName(code))
	}
	if code := commit(t, a.c, group, -1, "", "t", 0, 6); code != kerr.UnknownMemberID.Code {
		t.Errorf("commit from outside a group with members: %s, want UNKNOWN_MEMBER_ID", errName(code))
	}
	// The follower's sync waits for the leader's.
	corr = cb.Send(b2.syncReq(nil))
	if s := a2.sync(t, map[string][]byte{a2.memberID: []byte("A"), b2.memberID: []byte("B")}); s.ErrorCode != 0 || string(s.MemberAssignment) != "A" {
		t.Fatalf("leader sync: %s %q", errName(s.ErrorCode), s.MemberAssignment)
	}
	sb := kmsg.NewPtrSyncGroupResponse()
	sb.Version = 5
	if got := cb.Recv(sb); got != corr {
		t.Fatalf("correlation %d, want %d", got, corr)
	}
	if sb.ErrorCode != 0 || string(sb.MemberAssignment) != "B" {
		t.Fatalf("follower sync: %s %q", errName(sb.ErrorCode), sb.MemberAssignment)
	}
	stranger := &joined{c: a.c, group: group, memberID: "stranger", generation: 2}
	if code := stranger.heartbeat(t); code != kerr.UnknownMemberID.Code {
		t.Errorf("heartbeat of an unknown member: %s, want UNKNOWN_MEMBER_ID", errName(code))
	}
	if code := commit(t, a.c, group, 2, b2.memberID, "t", 0, 7); code != 0 {
		t.Errorf("commit of a member of the current generation: %s", errName(code))
	}
	if off, code := fetchOffset(t, a.c, group, "t", 0); code != 0 || off != 7 {
		t.Errorf("committed offset %d (%s), want 7", off, errName(code))
	}
}

func TestStaticMemberFenced(t *testing.T) {
	b := groupBroker(t)
	const group = "static"
	instance := ptr("instance-1")
	c1 := dial(t, b)
	// Static members join at once, even at v5+ (no MEMBER_ID_REQUIRED).
	m1 := checkJoined(t, c1, group, instance, c1.Do(joinReq(9, group, "", instance, 10*time.Second, []string{"range"}, "t")).(*kmsg.JoinGroupResponse))
	if !strings.HasPrefix(m1.memberID, "instance-1-") {
		t.Fatalf("static member ID %q does not start with its instance ID", m1.memberID)
	}
	if s := m1.sync(t, map[string][]byte{m1.memberID: []byte("a")}); s.ErrorCode != 0 {
		t.Fatalf("sync: %s", errName(s.ErrorCode))
	}
	// The same instance restarts without its member ID: it takes over,
	// without a rebalance since its protocols did not change.
	c2 := dial(t, b)
	m2 := checkJoined(t, c2, group, instance, c2.Do(joinReq(9, group, "", instance, 10*time.Second, []string{"range"}, "t")).(*kmsg.JoinGroupResponse))
	if m2.memberID == m1.memberID || m2.generation != m1.generation {
		t.Fatalf("rejoined static member: ID %q (old %q), generation %d (old %d)", m2.memberID, m1.memberID, m2.generation, m1.generation)
	}
	if s := m2.sync(t, nil); s.ErrorCode != 0 || string(s.MemberAssignment) != "a" {
		t.Fatalf("sync of the replaced member: %s %q, want the old assignment", errName(s.ErrorCode), s.MemberAssignment)
	}
	if code := m1.heartbeat(t); code != kerr.FencedInstanceID.Code {
		t.Errorf("heartbeat of the old member ID: %s, want FENCED_INSTANCE_ID", errName(code))
	}
	old := joinReq(9, group, m1.memberID, instance, 10*time.Second, []string{"range"}, "t")
	if resp := c1.Do(old).(*kmsg.JoinGroupResponse); resp.ErrorCode != kerr.FencedInstanceID.Code {
		t.Errorf("join of the old member ID: %s, want FENCED_INSTANCE_ID", errName(resp.ErrorCode))
	}
	if code := m2.heartbeat(t); code != 0 {
		t.Errorf("heartbeat of the new member ID: %s", errName(code))
	}
	// An administrator removes the static member by instance ID.
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version, req.Group = 5, group
	req.Members = []kmsg.LeaveGroupRequestMember{{InstanceID: instance}, {InstanceID: ptr("nobody")}}
	resp := c1.Do(req).(*kmsg.LeaveGroupResponse)
	if resp.ErrorCode != 0 || len(resp.Members) != 2 || resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave by instance ID: %+v", resp)
	}
	if d := describeGroup(t, c1, group); d.State != "Empty" || len(d.Members) != 0 {
		t.Fatalf("after the static member left: %s with %d members", d.State, len(d.Members))
	}
}

func TestLeaveGroup(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	m := join(t, c, "leave-v0", "t")
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version, req.Group, req.MemberID = 0, "leave-v0", "unknown"
	if resp := c.Do(req).(*kmsg.LeaveGroupResponse); resp.ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("v0 leave of an unknown member: %s", errName(resp.ErrorCode))
	}
	req.MemberID = m.memberID
	if resp := c.Do(req).(*kmsg.LeaveGroupResponse); resp.ErrorCode != 0 {
		t.Errorf("v0 leave: %s", errName(resp.ErrorCode))
	}
	if d := describeGroup(t, c, "leave-v0"); d.State != "Empty" {
		t.Errorf("group after its only member left: %s", d.State)
	}

	req = kmsg.NewPtrLeaveGroupRequest()
	req.Version, req.Group = 3, "no-such-group"
	req.Members = []kmsg.LeaveGroupRequestMember{{MemberID: "x"}}
	resp := c.Do(req).(*kmsg.LeaveGroupResponse)
	if resp.ErrorCode != 0 || len(resp.Members) != 1 || resp.Members[0].ErrorCode != kerr.UnknownMemberID.Code {
		t.Errorf("leave of a group that does not exist: %+v", resp)
	}
	req.Group = ""
	if resp := c.Do(req).(*kmsg.LeaveGroupResponse); resp.ErrorCode != kerr.InvalidGroupID.Code {
		t.Errorf("leave of group \"\": %s, want INVALID_GROUP_ID", errName(resp.ErrorCode))
	}
}

// TestSessionExpiry checks that a member that stops heartbeating is removed
// after its session timeout.
func TestSessionExpiry(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	const group = "expiry"
	resp := c.Do(joinReq(3, group, "", nil, 300*time.Millisecond, []string{"range"}, "t")).(*kmsg.JoinGroupResponse)
	m := checkJoined(t, c, group, nil, resp)
	if s := m.sync(t, map[string][]byte{m.memberID: {}}); s.ErrorCode != 0 {
		t.Fatalf("sync: %s", errName(s.ErrorCode))
	}
	ktest.Eventually(t, "the silent member to be removed", func() bool {
		return describeGroup(t, c, group).State == "Empty"
	})
	if code := m.heartbeat(t); code != kerr.UnknownMemberID.Code {
		t.Errorf("heartbeat after expiry: %s, want UNKNOWN_MEMBER_ID", errName(code))
	}
}

func TestOffsetCommitAndFetch(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	const topic = "offsets"
	createTopic(t, c, topic, 3)

	if off, code := fetchOffset(t, c, "never-committed", topic, 0); code != 0 || off != -1 {
		t.Errorf("offset of a group that does not exist: %d (%s), want -1", off, errName(code))
	}
	// A standalone consumer commits without a generation.
	for v := int16(0); v <= 9; v++ {
		group := "simple-v" + strconv.Itoa(int(v))
		resp := c.Do(commitReq(v, group, -1, "", topic, 1, 40+int64(v), ptr("meta"))).(*kmsg.OffsetCommitResponse)
		if code := commitCode(t, resp); code != 0 {
			t.Errorf("v%d simple commit: %s", v, errName(code))
		}
		if off, code := fetchOffset(t, c, group, topic, 1); code != 0 || off != 40+int64(v) {
			t.Errorf("v%d: committed %d (%s), want %d", v, off, errName(code), 40+v)
		}
	}
	if code := commitCode(t, c.Do(commitReq(8, "simple", -1, "", "no-such-topic", 0, 1, nil)).(*kmsg.OffsetCommitResponse)); code != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("commit to an unknown topic: %s", errName(code))
	}
	if code := commitCode(t, c.Do(commitReq(8, "simple", -1, "", topic, 3, 1, nil)).(*kmsg.OffsetCommitResponse)); code != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("commit to an unknown partition: %s", errName(code))
	}
	big := strings.Repeat("m", 4097)
	if code := commitCode(t, c.Do(commitReq(8, "simple", -1, "", topic, 0, 1, &big)).(*kmsg.OffsetCommitResponse)); code != kerr.OffsetMetadataTooLarge.Code {
		t.Errorf("commit with 4097 bytes of metadata: %s", errName(code))
	}
	// A generation for a group that does not exist.
	if code := commitCode(t, c.Do(commitReq(8, "ghost", 3, "m", topic, 0, 1, nil)).(*kmsg.OffsetCommitResponse)); code != kerr.IllegalGeneration.Code {
		t.Errorf("v8 commit with a generation to a missing group: %s, want ILLEGAL_GENERATION", errName(code))
	}
	if code := commitCode(t, c.Do(commitReq(9, "ghost", 3, "m", topic, 0, 1, nil)).(*kmsg.OffsetCommitResponse)); code != kerr.GroupIDNotFound.Code {
		t.Errorf("v9 commit with a generation to a missing group: %s, want GROUP_ID_NOT_FOUND", errName(code))
	}

	// v8 fetches several groups, each with null topics (everything) or a
	// list; unknown partitions come back as -1 with empty metadata.
	if code := commit(t, c, "simple-v9", -1, "", topic, 2, 99); code != 0 {
		t.Fatalf("commit: %s", errName(code))
	}
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	req.Groups = []kmsg.OffsetFetchRequestGroup{
		{Group: "simple-v9"},
		{Group: "simple-v8", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: topic, Partitions: []int32{0, 1}}}},
		{Group: "nobody"},
	}
	resp := c.Do(req).(*kmsg.OffsetFetchResponse)
	type po struct {
		group, topic string
		part         int32
		offset       int64
		meta         string
	}
	var got []po
	for _, g := range resp.Groups {
		if g.ErrorCode != 0 {
			t.Errorf("group %s: %s", g.Group, errName(g.ErrorCode))
		}
		for _, rt := range g.Topics {
			for _, p := range rt.Partitions {
				got = append(got, po{g.Group, rt.Topic, p.Partition, p.Offset, deref(p.Metadata)})
			}
		}
	}
	want := []po{{"simple-v9", topic, 1, 49, "meta"}, {"simple-v9", topic, 2, 99, ""}, {"simple-v8", topic, 0, -1, ""}, {"simple-v8", topic, 1, 48, "meta"}}
	if !slices.Equal(got, want) {
		t.Errorf("v8 fetch:\n got %+v\nwant %+v", got, want)
	}
}

func TestDeleteGroups(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	createTopic(t, c, "t", 1)
	join(t, c, "busy", "t")
	if code := commit(t, c, "idle", -1, "", "t", 0, 12); code != 0 {
		t.Fatalf("commit: %s", errName(code))
	}
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Version = 2
	req.Groups = []string{"busy", "idle", "missing"}
	resp := c.Do(req).(*kmsg.DeleteGroupsResponse)
	want := map[string]int16{"busy": kerr.NonEmptyGroup.Code, "idle": 0, "missing": kerr.GroupIDNotFound.Code}
	if len(resp.Groups) != 3 {
		t.Fatalf("%d answers for 3 groups", len(resp.Groups))
	}
	for _, g := range resp.Groups {
		if g.ErrorCode != want[g.Group] {
			t.Errorf("delete %s: %s, want %s", g.Group, errName(g.ErrorCode), errName(want[g.Group]))
		}
	}
	if off, _ := fetchOffset(t, c, "idle", "t", 0); off != -1 {
		t.Errorf("offset of a deleted group: %d", off)
	}
	if d := describeGroup(t, c, "idle"); d.State != "Dead" || d.ErrorCode != 0 {
		t.Errorf("deleted group described as %s (%s), want Dead", d.State, errName(d.ErrorCode))
	}
	dreq := kmsg.NewPtrDescribeGroupsRequest()
	dreq.Version = 6
	dreq.Groups = []string{"idle"}
	if d := c.Do(dreq).(*kmsg.DescribeGroupsResponse); len(d.Groups) != 1 || d.Groups[0].ErrorCode != kerr.GroupIDNotFound.Code || d.Groups[0].ErrorMessage == nil {
		t.Errorf("v6 describe of a deleted group: %+v", d.Groups)
	}
}

func TestListGroups(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	createTopic(t, c, "t", 1)
	m := join(t, c, "stable", "t")
	if s := m.sync(t, map[string][]byte{m.memberID: {}}); s.ErrorCode != 0 {
		t.Fatalf("sync: %s", errName(s.ErrorCode))
	}
	if code := commit(t, c, "empty", -1, "", "t", 0, 1); code != 0 {
		t.Fatalf("commit: %s", errName(code))
	}
	list := func(version int16, states, types []string) map[string]kmsg.ListGroupsResponseGroup {
		req := kmsg.NewPtrListGroupsRequest()
		req.Version, req.StatesFilter, req.TypesFilter = version, states, types
		resp := c.Do(req).(*kmsg.ListGroupsResponse)
		if resp.ErrorCode != 0 {
			t.Fatalf("list groups v%d: %s", version, errName(resp.ErrorCode))
		}
		out := make(map[string]kmsg.ListGroupsResponseGroup)
		for _, g := range resp.Groups {
			out[g.Group] = g
		}
		return out
	}
	all := list(0, nil, nil)
	if len(all) != 2 || all["stable"].ProtocolType != "consumer" || all["empty"].ProtocolType != "" {
		t.Errorf("v0 list: %+v", all)
	}
	if got := list(4, []string{"stable"}, nil); len(got) != 1 || got["stable"].GroupState != "Stable" {
		t.Errorf("v4 list of stable groups (lower case filter): %+v", got)
	}
	if got := list(5, []string{"Empty"}, []string{"classic"}); len(got) != 1 || got["empty"].GroupType != "classic" {
		t.Errorf("v5 list of empty classic groups: %+v", got)
	}
	if got := list(5, nil, []string{"consumer"}); len(got) != 0 {
		t.Errorf("v5 list of KIP-848 groups: %+v", got)
	}
}

func TestOffsetDelete(t *testing.T) {
	b := groupBroker(t)
	c := dial(t, b)
	createTopic(t, c, "subscribed", 1)
	createTopic(t, c, "other", 1)
	m := join(t, c, "g", "subscribed")
	if s := m.sync(t, map[string][]byte{m.memberID: {}}); s.ErrorCode != 0 {
		t.Fatalf("sync: %s", errName(s.ErrorCode))
	}
	for _, topic := range []string{"subscribed", "other"} {
		if code := commit(t, c, "g", m.generation, m.memberID, topic, 0, 3); code != 0 {
			t.Fatalf("commit %s: %s", topic, errName(code))
		}
	}
	del := func(group string, topics ...string) *kmsg.OffsetDeleteResponse {
		req := kmsg.NewPtrOffsetDeleteRequest()
		req.Group = group
		for _, topic := range topics {
			req.Topics = append(req.Topics, kmsg.OffsetDeleteRequestTopic{Topic: topic, Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}})
		}
		return c.Do(req).(*kmsg.OffsetDeleteResponse)
	}
	resp := del("g", "subscribed", "other", "missing")
	codes := map[string]int16{}
	for _, rt := range resp.Topics {
		codes[rt.Topic] = rt.Partitions[0].ErrorCode
	}
	if resp.ErrorCode != 0 || codes["subscribed"] != kerr.GroupSubscribedToTopic.Code || codes["other"] != 0 || codes["missing"] != kerr.UnknownTopicOrPartition.Code {
		t.Errorf("offset delete: group error %s, partitions %v", errName(resp.ErrorCode), codes)
	}
	if off, _ := fetchOffset(t, c, "g", "other", 0); off != -1 {
		t.Errorf("deleted offset still %d", off)
	}
	if off, _ := fetchOffset(t, c, "g", "subscribed", 0); off != 3 {
		t.Errorf("kept offset %d, want 3", off)
	}
	if resp := del("nobody", "other"); resp.ErrorCode != kerr.GroupIDNotFound.Code {
		t.Errorf("offset delete of a missing group: %s", errName(resp.ErrorCode))
	}
}

// TestGroupsSurviveRestart checks that committed offsets and a stable
// group's members and assignment come back when the broker restarts on the
// same data.
func TestGroupsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b := groupBroker(t, brokertest.WithDataDir(dir))
	c := dial(t, b)
	createTopic(t, c, "t", 2)
	m := join(t, c, "durable", "t")
	if s := m.sync(t, map[string][]byte{m.memberID: []byte("mine")}); s.ErrorCode != 0 {
		t.Fatalf("sync: %s", errName(s.ErrorCode))
	}
	if code := commit(t, c, "durable", m.generation, m.memberID, "t", 1, 1234); code != 0 {
		t.Fatalf("commit: %s", errName(code))
	}
	if code := commit(t, c, "simple", -1, "", "t", 0, 55); code != 0 {
		t.Fatalf("commit: %s", errName(code))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = groupBroker(t, brokertest.WithDataDir(dir))
	c = dial(t, b)
	ktest.Eventually(t, "the groups to load", func() bool {
		_, code := fetchOffset(t, c, "durable", "t", 1)
		return code != kerr.CoordinatorLoadInProgress.Code
	})
	if off, code := fetchOffset(t, c, "durable", "t", 1); code != 0 || off != 1234 {
		t.Errorf("after restart: offset %d (%s), want 1234", off, errName(code))
	}
	if off, code := fetchOffset(t, c, "simple", "t", 0); code != 0 || off != 55 {
		t.Errorf("after restart: simple offset %d (%s), want 55", off, errName(code))
	}
	d := describeGroup(t, c, "durable")
	if d.State != "Stable" || len(d.Members) != 1 || d.Members[0].MemberID != m.memberID || string(d.Members[0].MemberAssignment) != "mine" {
		t.Fatalf("after restart: %+v", d)
	}
	// The member carries on where it was.
	m.c = c
	if code := m.heartbeat(t); code != 0 {
		t.Errorf("heartbeat after restart: %s", errName(code))
	}
	if s := m.sync(t, nil); s.ErrorCode != 0 || string(s.MemberAssignment) != "mine" {
		t.Errorf("sync after restart: %s %q", errName(s.ErrorCode), s.MemberAssignment)
	}
}

// TestOffsetsExpire checks KIP-211 retention: the offsets of a group that
// never had members expire after their commit, those of a group whose
// members left expire after it became empty, and an empty group without
// offsets goes away.
func TestOffsetsExpire(t *testing.T) {
	const retention = 700 * time.Millisecond
	b := groupBroker(t, brokertest.WithConfig(func(c *broker.Config) {
		c.OffsetsRetention = retention
		c.OffsetsRetentionCheckInterval = 50 * time.Millisecond
	}))
	c := dial(t, b)
	createTopic(t, c, "t", 1)
	m := join(t, c, "consumers", "t")
	if s := m.sync(t, map[string][]byte{m.memberID: {}}); s.ErrorCode != 0 {
		t.Fatalf("sync: %s", errName(s.ErrorCode))
	}
	if code := commit(t, c, "consumers", m.generation, m.memberID, "t", 0, 8); code != 0 {
		t.Fatalf("commit: %s", errName(code))
	}
	if code := commit(t, c, "standalone", -1, "", "t", 0, 9); code != 0 {
		t.Fatalf("commit: %s", errName(code))
	}
	// While the consumer group has a member subscribed to the topic, its
	// offset stays past retention.
	start := time.Now()
	ktest.Eventually(t, "the standalone offset to expire", func() bool {
		off, _ := fetchOffset(t, c, "standalone", "t", 0)
		return off == -1
	})
	if time.Since(start) < retention/2 {
		t.Errorf("standalone offset expired after %v, retention is %v", time.Since(start), retention)
	}
	for time.Since(start) < retention+200*time.Millisecond {
		if code := m.heartbeat(t); code != 0 {
			t.Fatalf("heartbeat: %s", errName(code))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if off, _ := fetchOffset(t, c, "consumers", "t", 0); off != 8 {
		t.Fatalf("offset of a stable subscribed group expired: %d", off)
	}
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Version, leave.Group = 5, "consumers"
	leave.Members = []kmsg.LeaveGroupRequestMember{{MemberID: m.memberID}}
	if resp := c.Do(leave).(*kmsg.LeaveGroupResponse); resp.ErrorCode != 0 || resp.Members[0].ErrorCode != 0 {
		t.Fatalf("leave: %+v", resp)
	}
	emptied := time.Now()
	ktest.Eventually(t, "the empty group's offset to expire", func() bool {
		off, _ := fetchOffset(t, c, "consumers", "t", 0)
		return off == -1
	})
	if time.Since(emptied) < retention/2 {
		t.Errorf("empty group's offset expired %v after it became empty, retention is %v", time.Since(emptied), retention)
	}
	ktest.Eventually(t, "the groups to go", func() bool {
		return describeGroup(t, c, "consumers").State == "Dead" && describeGroup(t, c, "standalone").State == "Dead"
	})
}
