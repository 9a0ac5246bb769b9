package compattests

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestClusterPreferredLeaders checks automatic preferred-leader elections:
// with a short --leader-imbalance-check-interval every partition ends up
// led by its first replica, and after a leader is SIGKILLed and restarted
// the partitions it prefers come back to it, as with Kafka's
// auto.leader.rebalance.enable.
func TestClusterPreferredLeaders(t *testing.T) {
	c := startClusterWith(t, "--leader-imbalance-check-interval", "1s")
	ctx := testContext(t, 2*time.Minute)
	const topic, partitions = "preferred", 6
	createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, partitions, 3)
	preferred := func(_ int32, l partLeader) bool { return len(l.Replicas) > 0 && l.Leader == l.Replicas[0] }
	leaders := c.waitLeadersEverywhere(ctx, topic, partitions, preferred)

	victim := leaders[0].Leader
	c.broker(victim).Kill()
	moved := c.waitLeaders(ctx, topic, partitions, func(_ int32, l partLeader) bool { return l.Leader != victim && l.Leader >= 0 })
	t.Logf("SIGKILLed broker %d; leaders now %v", victim, describeLeaders(moved))

	c.broker(victim).Restart()
	c.waitReady(ctx)
	back := c.waitLeadersEverywhere(ctx, topic, partitions, preferred)
	t.Logf("after the restart: %v", describeLeaders(back))
	for p, l := range back {
		if l.Replicas[0] == victim && l.Epoch <= moved[p].Epoch {
			t.Errorf("partition %d is led by broker %d again without a new epoch (%d, was %d)", p, victim, l.Epoch, moved[p].Epoch)
		}
	}
}

func describeLeaders(m map[int32]partLeader) string {
	s := ""
	for p := range int32(len(m)) {
		s += fmt.Sprintf(" p%d=%d(e%d)", p, m[p].Leader, m[p].Epoch)
	}
	return s
}
