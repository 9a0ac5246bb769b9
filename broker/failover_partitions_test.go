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

// TestStandDelayOutranked covers a replica that has just refused its vote
// to a candidate whose log is behind its own while the leader's broker is
// down. With three replicas and one down, the candidate cannot win without
// that vote, so the replica stands at once rather than after its rank
// (broker 3 ranks behind broker 2); with five replicas and one down, the
// candidate may still win with the others' votes, so it waits a tick.
func TestStandDelayOutranked(t *testing.T) {
	tm := DefaultTimings()
	now := time.Now()
	e := &elector{b: &Broker{cfg: Config{NodeID: 3, Timings: tm}}, downSince: map[int32]time.Time{1: now.Add(-time.Second)}}
	md := cluster.Leader{Leader: 1, Epoch: 4}
	first := now.Add(-time.Minute)
	contact := now.Add(-2 * time.Second) // the leader, last heard before it went down
	refused := now.Add(-10 * time.Millisecond)

	replicas := []int32{1, 2, 3}
	up := map[int32]bool{2: true, 3: true}
	down := map[int32]bool{1: true}
	if d, stand := e.standDelay(raft.Follower, "1", contact, first, time.Time{}, replicas, md, up, down, now); !stand || d != tm.RankDelay {
		t.Fatalf("not outranked: stand %v after %v, want after the rank delay %v", stand, d, tm.RankDelay)
	}
	if d, stand := e.standDelay(raft.Follower, "1", contact, first, refused, replicas, md, up, down, now); !stand || d != 0 {
		t.Fatalf("outranked, three replicas: stand %v after %v, want at once", stand, d)
	}

	replicas = []int32{1, 2, 3, 4, 5}
	up = map[int32]bool{2: true, 3: true, 4: true, 5: true}
	if d, stand := e.standDelay(raft.Follower, "1", contact, first, refused, replicas, md, up, down, now); !stand || d != tm.ElectTick {
		t.Fatalf("outranked, five replicas: stand %v after %v, want after one tick %v", stand, d, tm.ElectTick)
	}
}
