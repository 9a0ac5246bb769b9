package broker

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/pubg1/pubg1/broker/cluster"
)

// TestStandDelayLeaderHeardFrom covers a follower whose failure detector
// still finds the leader's broker down (it restarted a moment ago) while
// that leader's Raft traffic arrives: the follower must not stand, or it
// would take the leadership from a replica just elected (a preferred
// leader election, say). A leader last heard before its broker was found
// down (killed) is not waited for.
func TestStandDelayLeaderHeardFrom(t *testing.T) {
	tm := DefaultTimings()
	now := time.Now()
	e := &elector{b: &Broker{cfg: Config{NodeID: 2, Timings: tm}}, downSince: map[int32]time.Time{1: now.Add(-time.Second)}}
	replicas := []int32{1, 2, 3}
	up := map[int32]bool{2: true, 3: true}
	down := map[int32]bool{1: true}
	md := cluster.Leader{Leader: 1, Epoch: 4}
	first := now.Add(-time.Minute)

	if _, stand := e.standDelay(raft.Follower, "1", now.Add(-100*time.Millisecond), first, time.Time{}, replicas, md, up, down, now); stand {
		t.Fatal("stood against a leader heard from after its broker was found down")
	}
	// Last heard before its broker was found down (killed): no waiting.
	if _, stand := e.standDelay(raft.Follower, "1", now.Add(-1100*time.Millisecond), first, time.Time{}, replicas, md, up, down, now); !stand {
		t.Fatal("did not stand against a leader last heard before its broker was found down")
	}
	// A leader whose broker is up is waited for until SilentLeader.
	up[1], down[1] = true, false
	if _, stand := e.standDelay(raft.Follower, "1", now.Add(-2*tm.PeerDeadAfter), first, time.Time{}, replicas, md, up, down, now); stand {
		t.Fatal("stood against a live leader's broker before SilentLeader")
	}
}
