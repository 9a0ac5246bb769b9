package compattests

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kadm"
)

// offlineWindow is how long the tests watch a partition or the metadata
// that must not elect a leader without its data: failover takes under two
// seconds, so a wrongful election would show well within it.
const offlineWindow = 5 * time.Second

// wipe deletes a killed broker's data directory, as a replaced disk or a
// lost volume would, and starts it again with the same ID in the
// background: it serves only once the cluster it rejoins has a leader to
// catch up from. The returned channel gives the start's outcome.
func (c *cluster) wipe(id int32) <-chan error {
	c.t.Helper()
	b := c.broker(id)
	if b.Alive() {
		c.t.Fatalf("wiping running broker %d", id)
	}
	if err := os.RemoveAll(b.dataDir); err != nil {
		c.t.Fatalf("wiping broker %d's data directory: %v", id, err)
	}
	done := make(chan error, 1)
	go func() { done <- b.launch() }()
	return done
}

// watchNoLeader fails the test if, within offlineWindow, any of the
// brokers ids reports a leader for the topic's partition 0 other than -1
// or one whose epoch is at most epoch (a leader from before the faults).
func (c *cluster) watchNoLeader(ctx context.Context, topic string, epoch int32, ids ...int32) {
	c.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, offlineWindow)
	defer cancel()
	var bad string
	ktest.Until(wctx, 100*time.Millisecond, func() bool {
		for _, id := range ids {
			ls, err := c.leadersFrom(id, topic)
			if err != nil {
				continue // not serving yet, or no metadata leader
			}
			if l, ok := ls[0]; ok && l.Leader >= 0 && l.Epoch > epoch {
				bad = fmt.Sprintf("broker %d reports broker %d leader at epoch %d", id, l.Leader, l.Epoch)
				return true
			}
		}
		return false
	})
	if bad != "" {
		c.t.Fatalf("a replica without the acknowledged records was elected: %s", bad)
	}
}

// TestWipedDataDirectory loses a broker's data directory while the only
// other replica alive is stale, the sequence that lost acknowledged records
// before data directories were fenced: broker S is frozen while records
// are acknowledged by the two others; both are killed, one of them (W)
// loses its data directory and restarts with the same ID, and S thaws. W
// must not vote for S, so the partition stays offline until the replica
// with the data returns, and then every acknowledged record is there once
// at its acknowledged offset. W is the partition's follower, then its
// leader.
func TestWipedDataDirectory(t *testing.T) {
	for _, wiped := range []string{"follower", "leader"} {
		t.Run(wiped, func(t *testing.T) {
			c := startCluster(t)
			ctx := testContext(t, 4*time.Minute)
			topic := "wiped-" + wiped
			createClusterTopic(ctx, t, kadm.NewClient(c.client(nil)), topic, 1, 3)
			l := c.waitLeadersEverywhere(ctx, topic, 1, nil)[0]
			var followers []int32
			for _, r := range l.Replicas {
				if r != l.Leader {
					followers = append(followers, r)
				}
			}
			stale := followers[0]
			w, keeper := followers[1], l.Leader
			if wiped == "leader" {
				w, keeper = l.Leader, followers[1]
			}
			before := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "before", 100, 1, 0)
			c.pause(stale)
			t.Logf("broker %d frozen; broker %d leads at epoch %d", stale, l.Leader, l.Epoch)
			during := produceAcked(ctx, t, c.client(c.liveIDs(), producerOpts()...), topic, "frozen", 2000, 1, 0)
			c.broker(w).Kill()
			c.broker(keeper).Kill()
			started := c.wipe(w)
			c.resume(stale)
			t.Logf("brokers %d and %d killed; broker %d restarted with an empty data directory; broker %d thawed", w, keeper, w, stale)
			c.watchNoLeader(ctx, topic, l.Epoch, stale, w)

			c.broker(keeper).Restart()
			if err := <-started; err != nil {
				t.Fatalf("restarting wiped broker %d: %v", w, err)
			}
			c.waitReady(ctx)
			c.waitLeadersEverywhere(ctx, topic, 1, newerThan(map[int32]partLeader{0: l}))
			after := produceAcked(ctx, t, c.client(nil, producerOpts()...), topic, "after", 100, 1, 0)
			acks := append(append(before, during...), after...)
			log, _ := c.consumeAll(ctx, topic, 1)
			reportLogProblems(t, "log after the wiped "+wiped+" rejoined", checkTopicLog(log, acks, true))

			// The wiped broker's own replica caught up: it can lead.
			c.broker(keeper).Kill()
			other := stale
			c.broker(other).Kill()
			c.broker(other).Restart()
			c.broker(keeper).Restart()
			c.waitReady(ctx)
			c.waitLeadersEverywhere(ctx, topic, 1, nil)
			log, _ = c.consumeAll(ctx, topic, 1)
			reportLogProblems(t, "log after a full restart", checkTopicLog(log, acks, true))
		})
	}
}

// TestWipedMetadataVoter is the same sequence for the metadata group:
// topics are created while broker S is frozen, then the metadata leader
// and the third broker are killed, the leader's data directory is wiped
// and it restarts, and S thaws. The metadata must not fall back to S's
// stale copy: once the third broker returns, every topic created is there.
func TestWipedMetadataVoter(t *testing.T) {
	c := startCluster(t)
	ctx := testContext(t, 4*time.Minute)
	m, err := metadataOf(c.broker(1).Addr())
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	ctrl := m.ControllerID
	var stale, keeper int32
	for _, id := range []int32{1, 2, 3} {
		if id == ctrl {
			continue
		}
		if stale == 0 {
			stale = id
		} else {
			keeper = id
		}
	}
	c.pause(stale)
	adm := kadm.NewClient(c.client([]int32{ctrl, keeper}))
	var topics []string
	for i := range 5 {
		name := fmt.Sprintf("created-while-%d-frozen-%d", stale, i)
		createClusterTopic(ctx, t, adm, name, 1, 3)
		topics = append(topics, name)
	}
	t.Logf("broker %d frozen; %d topics created through metadata leader %d", stale, len(topics), ctrl)
	c.broker(ctrl).Kill()
	c.broker(keeper).Kill()
	started := c.wipe(ctrl)
	c.resume(stale)
	// The stale broker must not lead the metadata (the wiped one, with an
	// empty log, cannot win the stale one's vote either way).
	wctx, cancel := context.WithTimeout(ctx, offlineWindow)
	defer cancel()
	var bad string
	ktest.Until(wctx, 100*time.Millisecond, func() bool {
		m, err := metadataWithin(c.broker(stale).Addr(), time.Second)
		if err == nil && m.ControllerID == stale {
			bad = fmt.Sprintf("broker %d leads the metadata", stale)
			return true
		}
		return false
	})
	if bad != "" {
		t.Fatalf("a metadata leader was elected without the committed metadata: %s", bad)
	}

	c.broker(keeper).Restart()
	if err := <-started; err != nil {
		t.Fatalf("restarting wiped broker %d: %v", ctrl, err)
	}
	c.waitReady(ctx)
	for _, id := range []int32{1, 2, 3} {
		m, err := metadataWithin(c.broker(id).Addr(), 5*time.Second, topics...)
		if err != nil {
			t.Fatalf("metadata from broker %d: %v", id, err)
		}
		for _, tp := range m.Topics {
			if tp.ErrorCode != 0 {
				t.Errorf("broker %d: topic %s created while broker %d was frozen is missing (error %d)", id, *tp.Topic, stale, tp.ErrorCode)
			}
		}
	}
}
