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
// leader election, say). Once the leader falls silent, it stands.
func TestStandDelayLeaderHeardFrom(t *testing.T) {
	tm := DefaultTimings()
	e := &elector{b: &Broker{cfg: Config{NodeID: 2, Timings: tm}}}
	now := time.Now()
	replicas := []int32{1, 2, 3}
	up := map[int32]bool{2: true, 3: true}
	down := map[int32]bool{1: true}
	md := cluster.Leader{Leader: 1, Epoch: 4}
	first := now.Add(-time.Minute)

	if _, stand := e.standDelay(raft.Follower, "1", now.Add(-100*time.Millisecond), first, time.Time{}, replicas, md, up, down, now); stand {
		t.Fatal("stood against a leader heard from 100 ms ago")
	}
	if _, stand := e.standDelay(raft.Follower, "1", now.Add(-2*tm.PeerDeadAfter), first, time.Time{}, replicas, md, up, down, now); !stand {
		t.Fatalf("did not stand against a leader whose broker is down and silent for %v", 2*tm.PeerDeadAfter)
	}
	// A leader whose broker is up is waited for until SilentLeader.
	up[1], down[1] = true, false
	if _, stand := e.standDelay(raft.Follower, "1", now.Add(-2*tm.PeerDeadAfter), first, time.Time{}, replicas, md, up, down, now); stand {
		t.Fatal("stood against a live leader's broker before SilentLeader")
	}
}
