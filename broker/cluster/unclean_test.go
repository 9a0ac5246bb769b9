package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// until polls cond every 10 ms until it holds or d has passed.
func until(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// suffrage is id's suffrage in c's latest configuration.
func suffrage(c *Controller, id raft.ServerID) (raft.ServerSuffrage, bool) {
	f := c.raft().GetConfiguration()
	if f.Error() != nil {
		return 0, false
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == id {
			return s.Suffrage, true
		}
	}
	return 0, false
}

// TestUncleanElectionAfterDemotion: the metadata leader demotes a member
// (as it does one that lost its data) and dies, leaving one voter alive of
// two and the demoted member. No leader is elected until an unclean
// election, asked of the demoted member, has the live voter force every
// member back to a voter; it then leads with the metadata it had, and
// the dead leader catches up when it returns.
func TestUncleanElectionAfterDemotion(t *testing.T) {
	peers, members := startMembers(t, 3, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var lead int
	if !until(20*time.Second, func() bool {
		for i, m := range members {
			if m.c.IsLeader() {
				lead = i
				return true
			}
		}
		return false
	}) {
		t.Fatal("no leader")
	}
	demoted, voter := (lead+1)%3, (lead+2)%3
	dID := raft.ServerID(strconv.Itoa(int(peers[demoted].ID)))
	members[demoted].stop()
	if err := members[lead].c.raft().DemoteVoter(dID, 0, 5*time.Second).Error(); err != nil {
		t.Fatalf("demoting %s: %v", dID, err)
	}
	// Allocations are not idempotent: the new run must not apply them again.
	if res, err := members[lead].c.Propose(ctx, AllocProducerIDsCommand(1000)); err != nil || res.Error() != nil {
		t.Fatalf("alloc: %v %v", err, res.Error())
	}
	create := &Command{Kind: cmdCreateTopic, Topic: "after-demotion", TopicID: [16]byte{7}, Replicas: [][]int32{{1, 2, 3}}}
	if res, err := members[lead].c.Propose(ctx, create); err != nil || res.Error() != nil {
		t.Fatalf("create: %v %v", err, res.Error())
	}
	if !until(10*time.Second, func() bool {
		s, ok := suffrage(members[voter].c, dID)
		return ok && s == raft.Nonvoter && members[voter].c.State().Topics["after-demotion"] != nil
	}) {
		t.Fatal("the live voter did not learn of the demotion and the topic")
	}
	members[lead].stop()
	members[lead].c = nil
	members[demoted].start(t, peers[demoted].ID, peers, peers[demoted].Addr)
	leaderless := func() bool {
		return members[voter].c.LeaderID() < 0 && members[demoted].c.LeaderID() < 0
	}
	if !until(10*time.Second, func() bool { return members[voter].c.cfg.Mux.PeerDown(raft.ServerAddress(peers[lead].Addr)) }) {
		t.Fatal("the dead leader is not found down")
	}
	time.Sleep(3 * time.Second) // several election timeouts
	if !leaderless() {
		t.Fatal("a leader was elected without a majority of voters")
	}

	if err := members[demoted].c.UncleanElection(ctx); err != nil {
		t.Fatalf("unclean election: %v", err)
	}
	if err := members[voter].c.UncleanElection(ctx); err != ErrElectionNotNeeded {
		t.Errorf("second unclean election: %v, want ErrElectionNotNeeded", err)
	}
	if got := members[voter].c.LeaderID(); got != peers[voter].ID {
		t.Errorf("broker %d leads; broker %d, the voter with the metadata, should", got, peers[voter].ID)
	}
	if s, ok := suffrage(members[voter].c, dID); !ok || s != raft.Voter {
		t.Errorf("demoted member %s is not a voter after the unclean election", dID)
	}
	if got, want := members[voter].c.State().NextProducerID, int64(1000); got != want {
		t.Errorf("next producer ID %d after the unclean election, want %d: entries were applied twice", got, want)
	}
	after := &Command{Kind: cmdCreateTopic, Topic: "after-unclean", TopicID: [16]byte{8}, Replicas: [][]int32{{1, 2, 3}}}
	if res, err := members[demoted].c.Propose(ctx, after); err != nil || res.Error() != nil {
		t.Fatalf("create after the unclean election: %v %v", err, res.Error())
	}
	members[lead].start(t, peers[lead].ID, peers, peers[lead].Addr)
	for i, m := range members {
		if !until(20*time.Second, func() bool {
			st := m.c.State()
			return st.Topics["after-demotion"] != nil && st.Topics["after-unclean"] != nil
		}) {
			t.Errorf("member %d: topics %v", peers[i].ID, m.c.State().Topics)
		}
	}
}
