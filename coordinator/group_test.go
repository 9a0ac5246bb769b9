package coordinator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
)

func joinRequest(group, memberID string, instanceID *string, rebalance time.Duration, protocols ...string) JoinRequest {
	req := JoinRequest{Group: group, MemberID: memberID, InstanceID: instanceID, ClientID: "c", SessionTimeout: 10 * time.Second,
		RebalanceTimeout: rebalance, ProtocolType: "consumer"}
	for _, p := range protocols {
		req.Protocols = append(req.Protocols, Protocol{Name: p, Metadata: subscriptionOf("t")})
	}
	return req
}

// joinAsync starts a JoinGroup whose answer arrives on the returned channel.
func (h *harness) joinAsync(req JoinRequest) <-chan JoinResult {
	ch := make(chan JoinResult, 1)
	h.c.JoinGroup(req, func(r JoinResult) { ch <- r })
	return ch
}

// TestProtocolVote checks Kafka's protocol selection: only protocols every
// member supports are candidates, and each member votes for its first
// candidate.
func TestProtocolVote(t *testing.T) {
	cfg := testConfig()
	cfg.InitialRebalanceDelay = 300 * time.Millisecond // all three join one generation
	h := newHarness(t, cfg, nil)
	a := h.joinAsync(joinRequest("g", "", nil, 5*time.Second, "range", "sticky", "roundrobin"))
	b := h.joinAsync(joinRequest("g", "", nil, 5*time.Second, "sticky", "roundrobin", "range"))
	c := h.joinAsync(joinRequest("g", "", nil, 5*time.Second, "roundrobin", "sticky"))
	for _, ch := range []<-chan JoinResult{a, b, c} {
		r := wait(t, "a join", ch)
		if r.Err != nil || r.Generation != 1 || deref(r.Protocol) != "sticky" {
			t.Fatalf("join: %v, generation %d, protocol %q; want generation 1 with sticky (2 votes)", r.Err, r.Generation, deref(r.Protocol))
		}
	}
	if r := h.join(joinRequest("g", "", nil, 5*time.Second, "range")); !errors.Is(r.Err, ErrInconsistentProtocol) {
		t.Fatalf("a member supporting only range: %v", r.Err)
	}
}

// TestStaticLeaderRejoin checks what a restarted static leader of a stable
// group is told: with JoinGroup v9 it learns it leads but must skip the
// assignment; before, it is told the old leader ID.
func TestStaticLeaderRejoin(t *testing.T) {
	h := newHarness(t, testConfig(), nil)
	first := h.member("g", ptr("i"), "mine")
	req := joinRequest("g", "", ptr("i"), 5*time.Second, "range")
	old := h.join(req)
	if old.Err != nil || old.Leader != first.MemberID || old.SkipAssignment || len(old.Members) != 0 || old.Generation != first.Generation {
		t.Fatalf("static leader rejoin before v9: %+v", old)
	}
	req.SkipAssignmentAllowed = true
	r := h.join(req)
	if r.Err != nil || r.Leader != r.MemberID || !r.SkipAssignment || len(r.Members) != 1 || r.Generation != first.Generation {
		t.Fatalf("static leader rejoin at v9: %+v", r)
	}
	s := h.sync(SyncRequest{Group: "g", Generation: r.Generation, MemberID: r.MemberID, InstanceID: ptr("i")})
	if s.Err != nil || string(s.Assignment) != "mine" {
		t.Fatalf("sync after the rejoin: %v %q", s.Err, s.Assignment)
	}
	// A vote for another protocol forces a rebalance instead.
	req.Protocols = []Protocol{{Name: "roundrobin"}, {Name: "range"}}
	if r := h.join(req); r.Err != nil || r.Generation != first.Generation+1 || deref(r.Protocol) != "roundrobin" {
		t.Fatalf("static rejoin with another protocol: %+v", r)
	}
}

// TestUnsyncedMemberRemoved checks that a member that joins but never sends
// SyncGroup is removed after the rebalance timeout, and the group
// rebalances without it.
func TestUnsyncedMemberRemoved(t *testing.T) {
	cfg := testConfig()
	cfg.InitialRebalanceDelay = 200 * time.Millisecond
	h := newHarness(t, cfg, nil)
	const rebalance = 300 * time.Millisecond
	a := h.joinAsync(joinRequest("g", "", nil, rebalance, "range"))
	b := h.joinAsync(joinRequest("g", "", nil, rebalance, "range"))
	ra, rb := wait(t, "join", a), wait(t, "join", b)
	if ra.Err != nil || rb.Err != nil || ra.Generation != 1 || rb.Generation != 1 {
		t.Fatalf("joins: %+v %+v", ra, rb)
	}
	leader, follower := ra, rb
	if rb.MemberID == rb.Leader {
		leader, follower = rb, ra
	}
	start := time.Now()
	s := h.sync(SyncRequest{Group: "g", Generation: 1, MemberID: leader.MemberID, Assignments: map[string][]byte{leader.MemberID: []byte("x")}})
	if s.Err != nil {
		t.Fatalf("leader sync: %v", s.Err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var err error
	if !ktest.Until(ctx, 20*time.Millisecond, func() bool {
		err = h.heartbeat(HeartbeatRequest{Group: "g", Generation: 1, MemberID: leader.MemberID})
		if err != nil && !errors.Is(err, ErrRebalanceInProgress) {
			t.Fatalf("heartbeat: %v", err)
		}
		return err != nil
	}) {
		t.Fatalf("heartbeat: %v after %v, want the rebalance under way", err, waitTimeout)
	}
	if waited := time.Since(start); waited < rebalance/2 {
		t.Errorf("the follower was removed after %v; the rebalance timeout is %v", waited, rebalance)
	}
	if err := h.heartbeat(HeartbeatRequest{Group: "g", Generation: 1, MemberID: follower.MemberID}); !errors.Is(err, ErrUnknownMemberID) {
		t.Fatalf("heartbeat of the removed follower: %v", err)
	}
	r := h.join(joinRequest("g", leader.MemberID, nil, rebalance, "range"))
	if r.Err != nil || r.Generation != 2 || len(r.Members) != 1 {
		t.Fatalf("rejoin without the follower: %+v", r)
	}
}

// TestJoinWaitsForKnownMembers checks that a rebalance of a stable group
// waits for its members to rejoin, and drops those that do not within the
// rebalance timeout.
func TestJoinWaitsForKnownMembers(t *testing.T) {
	h := newHarness(t, testConfig(), nil)
	const rebalance = 400 * time.Millisecond
	first := h.join(joinRequest("g", "", nil, rebalance, "range"))
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	if s := h.sync(SyncRequest{Group: "g", Generation: first.Generation, MemberID: first.MemberID}); s.Err != nil {
		t.Fatal(s.Err)
	}
	start := time.Now()
	r := h.join(joinRequest("g", "", nil, rebalance, "range"))
	if r.Err != nil || r.Generation != 2 || r.Leader != r.MemberID || len(r.Members) != 1 {
		t.Fatalf("the newcomer after the silent member's rebalance timeout: %+v", r)
	}
	if waited := time.Since(start); waited < rebalance/2 {
		t.Errorf("the join completed after %v without the old member; rebalance timeout %v", waited, rebalance)
	}
}
